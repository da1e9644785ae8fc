"""What PACS viewers show of cxrxai's objects over a CR: screenshots for docs/dicom.md.

Starts a loopback-only Orthanc (scripts/orthanc_loopback.py, with orthanc-webviewer),
stores the pydicom-data CR, runs ``python -m cxrxai explain FILE --to-pacs`` on it (the
product path: SR, SEG, GSPS and Secondary Capture go to the CR's study), then opens in
Debian's Chromium (Playwright):

- the OHIF viewer's prebuilt static site, from the npm package ``@ohif/app`` (unpack it
  first: ``npm pack @ohif/app@3.13.2 && tar xzf ohif-app-3.13.2.tgz``), served with the
  Orthanc's DICOMweb behind one origin by a small proxy written here (OHIF's own dev
  server is not in the package, and the browser must reach both at one origin);
- Orthanc's own web viewer, on the CR's series and on the Secondary Capture's.

Usage: ``.venv/bin/python scripts/viewer_screenshots.py --ohif package/dist --out docs/screenshots``
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OHIF_CONFIG = """window.config = {
  routerBasename: null, extensions: [], modes: [], showStudyList: true,
  maxNumberOfWebWorkers: 2, showWarningMessageForCrossOrigin: false,
  defaultDataSourceName: 'orthanc',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {
      friendlyName: 'Orthanc (loopback)', name: 'orthanc',
      wadoUriRoot: '/wado', qidoRoot: '/dicom-web', wadoRoot: '/dicom-web',
      qidoSupportsIncludeField: true, supportsReject: false,
      imageRendering: 'wadors', thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true, supportsFuzzyMatching: false, supportsWildcard: true,
      omitQuotationForMultipartRequest: true,
      acceptHeader: ['multipart/related; type=application/octet-stream; transfer-syntax=*'],
      bulkDataURI: { enabled: true },
    },
  }],
};
"""


def _handler(dist: Path, orthanc_port: int) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(dist), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith(("/dicom-web", "/wado")):
                return self._proxy()
            if self.path.split("?")[0] == "/app-config.js":
                body = OHIF_CONFIG.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
            local = dist / self.path.split("?")[0].lstrip("/")
            if not local.is_file():  # the single-page app's routes (/viewer...)
                self.path = "/index.html"
            return super().do_GET()

        def _proxy(self) -> None:
            upstream = http.client.HTTPConnection("127.0.0.1", orthanc_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            upstream.request("GET", self.path, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _orthanc_series(port: int, uid: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/tools/lookup", data=uid.encode(), method="POST"
    )
    with urllib.request.urlopen(request) as answer:
        found = json.load(answer)
    return next(item["ID"] for item in found if item["Type"] == "Series")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ohif", type=Path, required=True, help="@ohif/app's dist folder")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--wait", type=float, default=25.0, help="seconds a viewer may load")
    args = parser.parse_args()
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from playwright.sync_api import sync_playwright
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        launcher = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "orthanc_loopback.py"), "--storage",
             str(Path(temp) / "orthanc"), "--web-viewer"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ports = json.loads(launcher.stdout.readline())
            web = f"http://127.0.0.1:{ports['http']}/dicom-web"
            cr = get_testdata_file("RG1_UNCR.dcm")
            source = pydicom.dcmread(cr)
            DICOMwebClient(web).store_instances([source])
            subprocess.run(
                [sys.executable, "-m", "cxrxai", "explain", cr, "--methods", "gradcam",
                 "--out", str(Path(temp) / "maps"), "--to-pacs", web, "--overlays"],
                check=True, cwd=REPO,
            )  # fmt: skip
            # the same CR without its PixelSpacing of 0\0, on a study of its own: OHIF draws
            # nothing of an image whose pixel spacing is 0 (docs/dicom.md)
            spaced = pydicom.dcmread(cr)
            del spaced.PixelSpacing
            for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                setattr(spaced, keyword, generate_uid())
            spaced.file_meta.MediaStorageSOPInstanceUID = spaced.SOPInstanceUID
            spaced_file = Path(temp) / "cr-without-zero-spacing.dcm"
            spaced.save_as(spaced_file)
            DICOMwebClient(web).store_instances([spaced])
            subprocess.run(
                [sys.executable, "-m", "cxrxai", "explain", str(spaced_file), "--methods",
                 "gradcam", "--out", str(Path(temp) / "maps"), "--to-pacs", web, "--overlays"],
                check=True, cwd=REPO,
            )  # fmt: skip
            client = DICOMwebClient(web)
            series = {
                s["00080060"]["Value"][0]: s["0020000E"]["Value"][0]
                for s in client.search_for_series(source.StudyInstanceUID)
            }
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(args.ohif, ports["http"]))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            ohif = f"http://127.0.0.1:{server.server_address[1]}"
            study = source.StudyInstanceUID
            shots = {
                "dicom-ohif-study.jpg": f"{ohif}/viewer?StudyInstanceUIDs={study}",
                "dicom-ohif-capture.jpg": f"{ohif}/viewer?StudyInstanceUIDs={study}"
                f"&SeriesInstanceUIDs={series['OT']}",
                "dicom-ohif-cr-without-zero-spacing.jpg": f"{ohif}/viewer?StudyInstanceUIDs="
                f"{spaced.StudyInstanceUID}",
            }
            for modality, name in (("CR", "dicom-orthanc-webviewer-cr.jpg"),
                                   ("OT", "dicom-orthanc-webviewer-capture.jpg")):  # fmt: skip
                orthanc_id = _orthanc_series(ports["http"], series[modality])
                shots[name] = (
                    f"http://127.0.0.1:{ports['http']}/web-viewer/app/viewer.html"
                    f"?series={orthanc_id}"
                )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1000, "height": 640})
                errors: list[str] = []
                page.on("console", lambda m: m.type == "error" and errors.append(m.text[:200]))
                for name, url in shots.items():
                    page.goto(url)
                    time.sleep(args.wait)
                    for text in ("Skip all", "Confirm and hide"):  # OHIF's first-visit tips
                        if page.get_by_text(text).count():
                            page.get_by_text(text).first.click()
                    if "ohif" in name and "study" not in name:  # open the one series shown
                        thumbnail = page.locator("[data-cy='study-browser-thumbnail']")
                        if thumbnail.count():
                            thumbnail.first.dblclick()
                            time.sleep(args.wait / 2)
                    page.screenshot(path=str(args.out / name), quality=80)
                    print(f"{args.out / name}  <- {url.split('?')[0]}")
                for text in sorted(set(errors))[:20]:
                    print(f"  browser console: {text}")
                browser.close()
            server.shutdown()
        finally:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
