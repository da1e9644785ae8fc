"""Localisation metrics for 1,000 heatmap/mask pairs of 256x256, cxrxai (fused numba
kernels on the CPU, batched torch on a GPU) against a plain per-image NumPy/SciPy loop
computing the same numbers, in one process.

Masks are real COVID-QU-Ex Val infection masks (and lung masks, for the lung share);
heatmaps are the demo model's Grad-CAM maps of the same images (cycled to reach 1,000
pairs). The region is the top 10 % of
each map. Prints seconds, the speed-up and the largest absolute difference per metric.
Run: ``.venv/bin/python -m bench.bench_metrics [--pairs 1000] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from cxrxai.cases import findings_of
from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.environment import DEMO_CHECKPOINT, data_root
from cxrxai.explain import get_explainer
from cxrxai.metrics.regions import top_percent
from cxrxai.metrics.registry import BORDER_FRACTION, localisation_metrics, localisation_torch

PERCENT = 10.0


def top_percent_torch(maps: torch.Tensor, percent: float) -> torch.Tensor:
    """The top-p % region by torch.topk (what :func:`top_percent` does on a GPU)."""
    flat = maps.flatten(1)
    k = max(1, round(flat.shape[1] * percent / 100.0))
    return maps >= flat.topk(k, dim=1).values[:, -1].view(-1, 1, 1)


def reference(heat: np.ndarray, truth: np.ndarray, lungs: np.ndarray) -> dict[str, float]:
    """Every metric for one pair, written directly from the published formulas."""
    flat = heat.ravel()
    k = max(1, round(flat.size * PERCENT / 100.0))
    region = heat >= np.partition(flat, flat.size - k)[flat.size - k]
    tp = float(np.logical_and(region, truth).sum())
    fp = float(np.logical_and(region, ~truth).sum())
    fn = float(np.logical_and(~region, truth).sum())
    nan = float("nan")
    out: dict[str, float] = {}
    both = region.any() and truth.any()
    out["iou"] = tp / (tp + fp + fn) if both else nan
    out["dice"] = 2 * tp / (2 * tp + fp + fn) if both else nan
    out["precision"] = tp / (tp + fp) if both else nan
    out["recall"] = tp / (tp + fn) if both else nan
    if truth.any():
        constant = heat.max() == heat.min()  # a blank map points nowhere: a miss
        out["hit"] = 0.0 if constant else float(truth.flat[np.argmax(heat)])
        positive = np.clip(heat, 0, None)
        out["relevance_mass"] = float(positive[truth].sum() / positive.sum())
        n = int(truth.sum())
        top = heat >= np.partition(flat, flat.size - n)[flat.size - n]
        out["relevance_rank"] = float(np.logical_and(top, truth).sum() / top.sum())
    else:
        out["hit"] = out["relevance_mass"] = out["relevance_rank"] = nan
    if both:
        to_truth = distance_transform_edt(~truth)
        to_region = distance_transform_edt(~region)
        pt, tp_d = to_truth[region], to_region[truth]
        out["hausdorff"] = float(max(pt.max(), tp_d.max()))
        out["hd95"] = float(max(np.percentile(pt, 95), np.percentile(tp_d, 95)))
        out["mean_distance"] = float(pt.mean())
    else:
        out["hausdorff"] = out["hd95"] = out["mean_distance"] = nan
    positive = np.clip(heat, 0, None)
    rows = max(1, round(heat.shape[0] * BORDER_FRACTION))
    cols = max(1, round(heat.shape[1] * BORDER_FRACTION))
    inner = positive[rows : heat.shape[0] - rows, cols : heat.shape[1] - cols].sum()
    total = positive.sum()
    out["border_relevance"] = float((total - inner) / total) if total > 0 else nan
    out["lung_relevance"] = float(positive[lungs].sum() / total) if total > 0 else nan
    return out


def load_pairs(n_pairs: int, n_images: int, device: str | None) -> tuple[np.ndarray, ...]:
    """Grad-CAM maps, infection masks and lung masks of ``n_images`` cycled to ``n_pairs``."""
    bundle = load_checkpoint(DEMO_CHECKPOINT, device=device)
    cases = [
        c for c in load_covid_qu_ex(data_root() / "covid-qu-ex" / "Val") if c.labels == ["COVID-19"]
    ][:n_images]
    gradcam = get_explainer("gradcam")
    heat, truth, lungs = [], [], []
    for case in cases:
        image = case.load_image().pixels
        heat.append(gradcam.explain(bundle, image, target="COVID-19")[0].numpy())
        truth.append(findings_of(case.annotations, "COVID-19")[0].to_mask(image.shape))
        anatomy = [a for a in case.annotations if a.role == "anatomy"]
        lungs.append(anatomy[0].to_mask(image.shape))
    reps = -(-n_pairs // len(cases))
    return tuple(np.stack(x * reps)[:n_pairs] for x in (heat, truth, lungs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    heat_np, truth_np, lungs_np = load_pairs(args.pairs, args.images, args.device)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
    print(
        f"{platform.machine()} {name}, {torch.get_num_threads()} threads, device {device}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, "
        f"{len(heat_np)} pairs of {heat_np.shape[1]}x{heat_np.shape[2]}"
    )

    start = time.perf_counter()
    expected = [reference(*pair) for pair in zip(heat_np, truth_np, lungs_np, strict=True)]
    loop_s = time.perf_counter() - start

    heat = torch.from_numpy(heat_np).to(device)
    truth = torch.from_numpy(truth_np).to(device)
    lungs = torch.from_numpy(lungs_np).to(device)

    def batched() -> dict[str, torch.Tensor]:
        out = localisation_metrics(heat, top_percent(heat, PERCENT), truth, lungs=lungs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    batched()  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        got = batched()
        times.append(time.perf_counter() - start)
    torch_s = min(times)
    print(
        f"NumPy/SciPy loop: {loop_s:.3f} s; cxrxai: {torch_s:.3f} s; "
        f"speed-up {loop_s / torch_s:.1f}x"
    )
    if device.type == "cpu":  # the GPU formulation, run on the CPU, for comparison
        start = time.perf_counter()
        localisation_torch(heat, top_percent_torch(heat, PERCENT), truth, lungs=lungs)
        seconds = time.perf_counter() - start
        print(f"(batched torch functions on the CPU: {seconds:.3f} s, {loop_s / seconds:.1f}x)")
    print("| metric | largest |difference| | NaN pattern equal |")
    print("|---|---|---|")
    for metric, values in got.items():
        ours = values.double().cpu().numpy()
        theirs = np.array([e[metric] for e in expected])
        same_nan = bool((np.isnan(ours) == np.isnan(theirs)).all())
        finite = ~np.isnan(theirs) & ~np.isnan(ours)
        diff = float(np.abs(ours[finite] - theirs[finite]).max()) if finite.any() else 0.0
        print(f"| {metric} | {diff:.3g} | {same_nan} |")


if __name__ == "__main__":
    main()
