"""Throughput of ``evaluate``'s engines on the same real cases, in one process: the
in-process engine against the Ray engine with 1 and 2 workers (more with ``--workers``),
plus what bounds a cluster: the driver's single SQLite writer, reading images, merging
shards' databases and scoring a map by image size (docs/benchmarks.md turns these into a
projection).

Cases: a random sample of COVID-QU-Ex Val (``--per-class`` per class, seed 0), the demo
checkpoint, no heatmap cache (every map computed), reference lung masks. Each engine
writes its own fresh database; the rows are checked equal to the in-process engine's.

Per engine it prints the wall time of the whole run (Ray: the workers' start-up
included), the steady throughput in maps per second (between the first and the last
result, so start-up is excluded) and both against the in-process engine.

Run: ``.venv/bin/python -m bench.bench_engine [--per-class 4] [--methods gradcam,lrp]
[--workers 1,2] [--device cuda]``. On one GPU the Ray workers share it (1/N GPU each)
and split the CPUs between them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.registry import load_split_cases
from cxrxai.environment import DEMO_CHECKPOINT, data_root
from cxrxai.evaluation import store
from cxrxai.evaluation.evaluate import (
    DEFAULT_REGIONS,
    CaseResult,
    Evaluator,
    RunOptions,
    Unit,
    record,
    run_in_process,
    score_heatmap,
)
from cxrxai.evaluation.evaluate import Summary as RunSummary
from cxrxai.evaluation.ray_engine import RayEngine, RayOptions, require_ray, runtime_env
from cxrxai.explain.base import Heatmap

ROWS = "select * from localisation order by case_id, method, target, mode, value"


class Clock:
    """Times of each result (the steady rate excludes start-up)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.results: list[float] = []

    def __call__(self, result: CaseResult | None = None) -> None:
        self.results.append(time.perf_counter())

    def steady(self, maps_per_case: float) -> float:
        if len(self.results) < 2:
            return float("nan")
        return (len(self.results) - 1) * maps_per_case / (self.results[-1] - self.results[0])


def run_process(evaluator: Evaluator, cases, folder: Path) -> tuple[float, Clock, list]:
    db = store.open_results(folder / "process.sqlite")
    clock = Clock()

    def progress(items):
        for item in items:
            yield item
            clock()

    run_in_process(evaluator, cases, db, progress)
    return time.perf_counter() - clock.start, clock, [dict(r) for r in db.query(ROWS)]


def run_ray(evaluator, cases, folder: Path, workers: int, gpus: float, cpus: float):
    db = store.open_results(folder / f"ray{workers}.sqlite")
    engine = RayEngine(RayOptions(workers=workers, gpus_per_worker=gpus, cpus_per_worker=cpus))
    engine.on_result = clock = Clock()
    engine.run(evaluator, cases, db)
    return time.perf_counter() - clock.start, clock, [dict(r) for r in db.query(ROWS)]


def largest_difference(ours: list[dict], theirs: list[dict]) -> tuple[float, str]:
    """The largest relative difference of any float value of matching rows, and where
    (keys must match: a missing or extra row is an error)."""
    keys = store.LOCALISATION_KEY
    assert [tuple(r[k] for k in keys) for r in ours] == [tuple(r[k] for k in keys) for r in theirs]
    worst, where = 0.0, ""
    for a, b in zip(ours, theirs, strict=True):
        for column, value in a.items():
            if isinstance(value, float) and isinstance(b[column], float):
                difference = abs(value - b[column]) / max(abs(value), 1e-12)
                if difference > worst:
                    worst, where = difference, f"{column} {value:.6g} vs {b[column]:.6g}"
            elif value != b[column]:
                raise AssertionError(f"{a['case_id']} {column}: {value} != {b[column]}")
    return worst, where


def writer_rate(units: int, rows_per_unit: int, folder: Path) -> float:
    """Units per second the single SQLite writer stores (one transaction each), rows like
    a COVID-QU-Ex unit's."""
    db = store.open_results(folder / "writer.sqlite")
    metrics = {name: 0.5 for name in ("iou", "dice", "precision", "recall", "hit")}
    summary = RunSummary()
    start = time.perf_counter()
    for u in range(units):
        rows = [
            {"checkpoint_sha256": "0" * 64, "case_id": f"c{u}", "method": "gradcam",
             "target": "COVID-19", "mode": "top-percent", "value": float(v), **metrics}
            for v in range(rows_per_unit)
        ]  # fmt: skip
        record(db, CaseResult(f"c{u}", [Unit(f"c{u}", "gradcam", rows, [])]), summary)
    return units / (time.perf_counter() - start)


def merge_rate(units: int, rows_per_unit: int, folder: Path) -> tuple[int, float]:
    """Rows per second ``merge-results`` copies from two shards of ``units`` units each."""
    metrics = {name: 0.5 for name in ("iou", "dice", "precision", "recall", "hit")}
    shards = []
    for k in range(2):
        shard = store.open_results(folder / f"shard{k}.sqlite")
        rows = [
            {"checkpoint_sha256": "0" * 64, "case_id": f"c{k}-{u}", "method": "gradcam",
             "target": "COVID-19", "mode": "top-percent", "value": float(v),
             "metrics_version": store.METRICS_VERSION, **metrics}
            for u in range(units) for v in range(rows_per_unit)
        ]  # fmt: skip
        shard[store.LOCALISATION].insert_all(rows, batch_size=5000)
        shard.conn.close()
        shards.append(folder / f"shard{k}.sqlite")
    start = time.perf_counter()
    added = store.merge_results(store.open_results(folder / "merged.sqlite"), shards)
    return added[store.LOCALISATION], added[store.LOCALISATION] / (time.perf_counter() - start)


def scoring_seconds(side: int, device: torch.device) -> float:
    """Seconds to score one map of ``side`` x ``side`` pixels at every default region
    setting with lung fields (what each map costs after it is explained: regions and
    metrics run at the image's resolution, whatever the model's input size)."""
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.random((8, 8)).astype(np.float32), (side, side), cv2.INTER_CUBIC)
    truth = np.zeros((side, side), bool)
    truth[side // 4 : side // 2, side // 4 : side // 2] = True
    lungs = np.zeros((side, side), bool)
    lungs[side // 8 : -side // 8, side // 8 : -side // 8] = True
    heatmap = Heatmap(torch.from_numpy(smooth).to(device), "gradcam", 0, "x", {})
    score_heatmap(heatmap, truth, {}, list(DEFAULT_REGIONS), lungs=lungs)  # warm-up
    start = time.perf_counter()
    for _ in range(3):
        score_heatmap(heatmap, truth, {}, list(DEFAULT_REGIONS), lungs=lungs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / 3


def read_rate(cases) -> float:
    """Images per second one process reads and decodes (the dataset's PNGs)."""
    start = time.perf_counter()
    for case in cases:
        case.load_image()
    return len(cases) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--methods", default="gradcam,lrp")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    methods = args.methods.split(",")
    ray = require_ray()
    cases = load_split_cases("covid-qu-ex", "Val", data_root(), sample_per_class=args.per_class)
    bundle = load_checkpoint(DEMO_CHECKPOINT, device=args.device)
    evaluator = Evaluator(bundle, methods, RunOptions())
    maps_per_case = len(methods)  # one label per COVID-QU-Ex case
    maps = len(cases) * maps_per_case
    name = torch.cuda.get_device_name() if bundle.device.type == "cuda" else platform.processor()
    cpus = os.cpu_count() or 1
    print(
        f"{time.strftime('%Y-%m-%d')}  {platform.machine()} {name}, {cpus} CPUs, "
        f"torch {torch.__version__}, ray {ray.__version__}; {len(cases)} cases x "
        f"{methods} = {maps} maps, no cache"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wall, clock, reference = run_process(evaluator, cases, folder)
        base = clock.steady(maps_per_case)
        print(f"{'engine':<22s} {'wall s':>8s} {'maps/s':>8s} {'steady maps/s':>14s} "
              f"{'x process':>10s} {'max rel diff':>12s}")  # fmt: skip
        print(f"{'in-process':<22s} {wall:8.1f} {maps / wall:8.2f} {base:14.2f} {1.0:10.2f} "
              f"{0.0:12.1e}")  # fmt: skip
        start = time.perf_counter()
        ray.init(include_dashboard=False, runtime_env=runtime_env(), logging_level="warning")
        print(f"(ray.init of a local instance: {time.perf_counter() - start:.1f} s)")
        gpus_total = 1.0 if bundle.device.type == "cuda" else 0.0
        for workers in [int(w) for w in args.workers.split(",")]:
            gpus = gpus_total / workers
            per_worker = max(1.0, float(cpus // workers))
            wall, clock, rows = run_ray(evaluator, cases, folder, workers, gpus, per_worker)
            steady = clock.steady(maps_per_case)
            worst, where = largest_difference(reference, rows)
            label = f"ray {workers} worker(s)" + (f" {gpus:g} GPU" if gpus else "")
            print(
                f"{label:<22s} {wall:8.1f} {maps / wall:8.2f} {steady:14.2f} "
                f"{steady / base:10.2f} {worst:12.1e}" + (f"  ({where})" if worst > 1e-5 else "")
            )
        ray.shutdown()
        rows_per_unit = len(reference) // max(1, len(cases) * len(methods))
        rate = writer_rate(2000, rows_per_unit, folder)
        print(f"SQLite writer: {rate:,.0f} units/s ({rows_per_unit} rows each, one transaction)")
        rows, merged = merge_rate(10_000, rows_per_unit, folder)
        print(f"merge-results: {merged:,.0f} rows/s ({rows:,} rows from 2 shards)")
        times = [f"{side}² {scoring_seconds(side, bundle.device) * 1000:,.0f} ms"
                 for side in (256, 1024, 2500)]  # fmt: skip
        print(f"scoring one map (9 region settings, lungs) at: {', '.join(times)}")
        print(f"image reading: {read_rate(cases):,.1f} images/s in one process "
              f"(COVID-QU-Ex PNG, {np.mean([c.load_image().pixels.size for c in cases[:4]]):,.0f} "
              f"pixels)")  # fmt: skip


if __name__ == "__main__":
    main()
