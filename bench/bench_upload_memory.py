"""Peak memory of what the server does with the largest accepted upload: a 4,300 x 4,300
16-bit PNG (the largest chest detectors; the limit is 5,000 px a side) read, predicted,
explained with Grad-CAM and LRP and drawn as overlays, as the Review page does, each stage
in a fresh process (peak RSS, ``ru_maxrss``). For scale: the same with pydicom-data's
1,955 x 1,841 radiograph, and the process after its imports alone.
Run: ``.venv/bin/python -m bench.bench_upload_memory``.
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
import time

STAGES = ("imports", "read", "predict", "explain+overlay")


def _measure(source: str, stage: str) -> None:
    """Run one stage on ``source`` in this process and print the peak RSS in MB."""
    from pydicom.data import get_testdata_file

    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.explain import get_explainer
    from cxrxai.imageio import read_image
    from cxrxai.render import overlay
    from tests.test_hostile_images import png_of_zeros

    data = png_of_zeros(4300, 4300, 16) if source == "png-4300" else None
    start = time.perf_counter()
    if stage != "imports":
        if data is not None:
            image = read_image(data, name="detector.png")
        else:
            image = read_image(get_testdata_file("RG1_UNCR.dcm"))
        del data
        if stage in ("predict", "explain+overlay"):
            bundle = load_checkpoint(DEMO_CHECKPOINT, device="cpu")
            bundle.predict_proba(image.pixels)
        if stage == "explain+overlay":
            for method in ("gradcam", "lrp"):
                (heatmap,) = get_explainer(method).explain(bundle, image.pixels, target=0)
                overlay(image.pixels, heatmap.numpy())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak_mb:.0f} {time.perf_counter() - start:.1f}")


def main() -> None:
    print(f"{platform.node()}, {time.strftime('%Y-%m-%d')}; peak RSS per stage (MB), seconds")
    for source in ("png-4300", "RG1_UNCR"):
        for stage in STAGES:
            out = subprocess.run(
                [sys.executable, "-m", "bench.bench_upload_memory", source, stage],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            print(f"{source:10s} {stage:16s} peak {out[-2]:>6s} MB  {out[-1]:>5s} s")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _measure(sys.argv[1], sys.argv[2])
    else:
        main()
