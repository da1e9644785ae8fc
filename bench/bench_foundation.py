"""Foundation speed: image reading and model inference against the reference libraries.

Run: ``.venv/bin/python -m bench.bench_foundation [--n 200]`` (one process, same inputs).
Prints seconds per image for cxrxai and for the plain library call it wraps, and the ratio
(cxrxai / reference; > 1 = our overhead). Record results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import cv2
import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.environment import DEMO_CHECKPOINT, data_root
from cxrxai.imageio import read_image


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, ours: float, reference: float, per: int, reference_name: str) -> None:
    print(
        f"| {name} | {ours / per * 1e3:.2f} | {reference / per * 1e3:.2f} | "
        f"{ours / reference:.2f} | {reference_name} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="COVID-QU-Ex images to use")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )
    paths = [c.image_path for c in load_covid_qu_ex(data_root() / "covid-qu-ex" / "Val")][: args.n]
    print("| step | cxrxai ms/image | reference ms/image | ratio | reference |")
    print("|---|---|---|---|---|")

    ours = best_of(lambda: [read_image(p) for p in paths])
    ref = best_of(
        lambda: [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) / np.float32(255) for p in paths]
    )
    row("read PNG 256x256", ours, ref, len(paths), "cv2.imread + scale")

    for name in ("RG1_UNCR", "RG1_J2KR"):
        path = get_testdata_file(f"{name}.dcm")
        ours = best_of(lambda: read_image(path))  # noqa: B023
        ref = best_of(lambda: pydicom.dcmread(path).pixel_array)  # noqa: B023
        row(f"read DICOM {name} 1955x1841", ours, ref, 1, "pydicom pixel_array")

    bundle = load_checkpoint(DEMO_CHECKPOINT, device="cpu")
    images = [read_image(p).pixels for p in paths[:64]]
    prepared = [bundle.preprocess(im) for im in images]
    with torch.no_grad():
        bundle.model(prepared[0])
        ours = best_of(lambda: [bundle.predict_proba(im) for im in images])
        ref = best_of(lambda: [bundle.model(x) for x in prepared])
    row(
        "predict, batch 1 (incl. resize + normalise)",
        ours,
        ref,
        len(images),
        "model(x) on a prepared tensor",
    )
    batch = torch.cat(prepared)
    with torch.no_grad():
        ours = best_of(lambda: bundle.predict_proba(images))
        ref = best_of(lambda: bundle.model(batch))
    row(f"predict, batch {len(images)}", ours, ref, len(images), "model(x) on a prepared batch")


if __name__ == "__main__":
    main()
