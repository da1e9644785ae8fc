"""The sanity check (cascading randomisation, Grad-CAM and LRP, every layer group of the demo
model) on a 256 px COVID-QU-Ex image and on pydicom-data's 1955x1841 radiograph, with the
maps compared at full size (as before 2026-11-24) and at most 256 px a side (now), in one
process. Prints the best of ``--repeats`` runs and the verdicts, which must agree.
Run: ``.venv/bin/python -m bench.bench_sanity [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from pydicom.data import get_testdata_file

from cxrxai.checkpoint import load_checkpoint
from cxrxai.environment import DEMO_CHECKPOINT, data_root
from cxrxai.evaluation import sanity
from cxrxai.imageio import read_image
from cxrxai.metrics import agreement

METHODS = ["gradcam", "lrp"]


def full_size(values: np.ndarray, side: int = agreement.COMPARE_SIDE) -> np.ndarray:
    return values.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    bundle = load_checkpoint(DEMO_CHECKPOINT)
    covid = data_root() / "covid-qu-ex" / "Val" / "COVID-19" / "images" / "covid_1902.png"
    images = {
        "covid_1902": read_image(covid).pixels,
        "RG1_UNCR": read_image(get_testdata_file("RG1_UNCR.dcm")).pixels,
    }
    print(f"{platform.node()} {bundle.device}, methods {METHODS}")
    downsized = agreement.downsized
    try:
        for name, image in images.items():
            results = {}
            for label, compare_at in (("full size", full_size), ("<= 256 px", downsized)):
                agreement.downsized = compare_at  # what compare_maps calls
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    rows = sanity.cascading_randomisation(bundle, image, METHODS, 0)
                    times.append(time.perf_counter() - start)
                results[label] = (min(times), sanity.verdicts(rows))
                print(
                    f"{name} {image.shape[1]}x{image.shape[0]}, maps compared at {label}: "
                    f"best {min(times):.1f} s of {args.repeats}; verdicts {results[label][1]}"
                )
            ratio = results["full size"][0] / results["<= 256 px"][0]
            same = results["full size"][1] == results["<= 256 px"][1]
            print(f"  speed-up {ratio:.1f}x, same verdicts: {same}")
    finally:
        agreement.downsized = downsized


if __name__ == "__main__":
    main()
