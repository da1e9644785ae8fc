"""Pulling radiographs from a PACS and pushing results back, against a local Orthanc.

Stores ``--images`` copies of the pydicom-data CR (1841 x 1955, half uncompressed, half
JPEG 2000 lossless, new UIDs each) in an Orthanc started by scripts/orthanc_loopback.py
(its own network namespace; every request also crosses that launcher's loopback relay),
then times, in one process on the same instances:

- reading them from disk with ``read_image`` (the reference),
- fetching them by WADO-RS (DICOMweb) and by C-GET (DIMSE) and decoding the bytes,
- building one case's objects (SR, SEG of 2 maps, GSPS, 2 Secondary Captures) and
  sending them by STOW-RS and by C-STORE.

Run: ``.venv/bin/python -m bench.bench_pacs [--images 20]`` (about a minute; needs
Debian's orthanc and orthanc-dicomweb, and requirements-pacs.txt).
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from cxrxai.imageio import read_image
from cxrxai.pacs.address import parse_address
from cxrxai.pacs.connect import open_source
from cxrxai.pacs.objects import result_objects
from cxrxai.pacs.results import Algorithm, CaseResult, MapResult
from cxrxai.pacs.source import Query

REPO = Path(__file__).resolve().parents[1]


def copies(folder: Path, n: int) -> list[Path]:
    """``n`` copies of the CR on one new study, each with its own series and instance UID."""
    study = pydicom.uid.generate_uid()
    paths = []
    for i in range(n):
        name = "RG1_UNCR.dcm" if i % 2 == 0 else "RG1_J2KR.dcm"
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, pydicom.uid.generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        path = folder / f"{i:03d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        launcher = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "orthanc_loopback.py"), "--storage",
             str(folder / "orthanc")],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ports = json.loads(launcher.stdout.readline())
            run(folder, ports, args.images)
        finally:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(15)


def run(folder: Path, ports: dict[str, int], n: int) -> None:
    (folder / "files").mkdir()
    paths = copies(folder / "files", n)
    web = open_source(parse_address(f"http://127.0.0.1:{ports['http']}/dicom-web"))
    dimse = open_source(parse_address(f"dicom://ORTHANC@127.0.0.1:{ports['dicom']}"))
    stored = [pydicom.dcmread(p) for p in paths]
    web.store(stored)
    study = str(stored[0].StudyInstanceUID)
    refs = web.find(Query(study_uid=study))
    assert len(refs) == n, len(refs)
    limit = 64 << 20
    disk = timed(lambda: [read_image(p) for p in paths])
    wado = timed(lambda: [read_image(web.fetch(r, limit), name="x") for r in refs])
    cget = timed(lambda: [read_image(dimse.fetch(r, limit), name="x") for r in refs])
    source = stored[0]
    pixels = read_image(paths[0]).pixels
    values = np.zeros(pixels.shape, np.float32)
    values[500:900, 400:800] = 1.0
    maps = tuple(
        MapResult(m, "COVID-19", values, {}, "top-percent 10", ((400, 500, 800, 900),),
                  {"iou": 0.5, "lung_relevance": 0.8})
        for m in ("gradcam", "lrp")
    )  # fmt: skip
    result = CaseResult({"COVID-19": 0.7, "Normal": 0.3}, ("COVID-19",), maps)
    algorithm = Algorithm("demo", "format 1", "0" * 64, "bench")
    objects: list = []
    build = timed(lambda: objects.extend(result_objects(source, result, algorithm, pixels)))
    stow = timed(lambda: web.store(objects))
    again = result_objects(source, result, algorithm, pixels)
    cstore = timed(lambda: dimse.store(again))
    size = sum(len(o.PixelData) for o in objects if "PixelData" in o) / 2**20
    print(f"{platform.processor() or platform.machine()}, {n} instances of 1841 x 1955 px")
    print(f"{'read':<34s} {'images/s':>9s} {'vs disk':>8s}")
    for name, seconds in (("disk (read_image)", disk), ("WADO-RS + decode", wado),
                          ("C-GET + decode", cget)):  # fmt: skip
        print(f"{name:<34s} {n / seconds:9.1f} {disk / seconds:8.2f}x")
    print(f"one case's {len(objects)} objects ({size:.0f} MB of pixels):")
    print(f"  build (highdicom)   {build:6.2f} s")
    print(f"  STOW-RS             {stow:6.2f} s")
    print(f"  C-STORE             {cstore:6.2f} s")


if __name__ == "__main__":
    main()
