"""The Ray engine: same rows as the in-process engine on a real split, a killed worker
costs a retry (never a lost or doubled row), an interrupted driver resumes, joining an
existing cluster and starting a local one from the CLI, and a clear message without Ray.

The tests start one local Ray instance with this machine's CPUs (the module fixture).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cxrxai.cases import Annotation, Case
from cxrxai.checkpoint import load_checkpoint
from cxrxai.cli import main
from cxrxai.datasets.registry import load_split_cases
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation import store
from cxrxai.evaluation.evaluate import Evaluator, RunOptions, run_in_process
from cxrxai.evaluation.ray_engine import RayEngine, RayOptions, require_ray, runtime_env
from cxrxai.lungs import LungSegmenter

REPO = Path(__file__).resolve().parents[2]
ROWS = "select * from localisation order by case_id, method, target, mode, value"


def _ray():
    try:
        return require_ray()
    except CxrxaiError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} (the test command installs requirements-ray.txt)")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance for this module; its address lets other drivers join it."""
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env())
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def toy_bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(labels=("sick", "well"), size=32), device="cpu")


def _toy_cases(folder: Path, n: int) -> list[Case]:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        path = folder / f"x{i}.png"
        cv2.imwrite(str(path), (rng.random((40, 40)) * 255).astype(np.uint8))
        box = Annotation("box", "sick", "R1", box=(4, 4, 26, 21))
        cases.append(Case(f"toy/{i}", path, ["sick"], [box], "toy", "test"))
    return cases


def _rows(db) -> list[dict]:
    return [dict(row) for row in db.query(ROWS)]


def _in_process_rows(bundle, methods: list[str], cases: list[Case], path: Path) -> list[dict]:
    """The default engine's rows for the same work (what the Ray engine must match), with
    one torch thread as the workers have: with two, the maps' float32 sums are ordered
    differently, and a pixel at the top-10 % threshold can change side (a mean distance
    5e-5 apart was seen)."""
    db = store.open_results(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_in_process(Evaluator(bundle, methods), cases, db)
    finally:
        torch.set_num_threads(threads)
    return _rows(db)


def _assert_same_rows(ours: list[dict], theirs: list[dict]) -> None:
    """Same keys and every value equal; floats to float32 precision (the workers' BLAS
    runs with one thread, which orders sums differently than two)."""
    assert [tuple(r[k] for k in store.LOCALISATION_KEY) for r in ours] == [
        tuple(r[k] for k in store.LOCALISATION_KEY) for r in theirs
    ]
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.keys() == other.keys()
        for column, value in mine.items():
            if isinstance(value, float) and isinstance(other[column], float):
                assert math.isclose(value, other[column], rel_tol=1e-5, abs_tol=1e-6), column
            else:
                assert value == other[column], (mine["case_id"], mine["method"], column)


def test_rows_match_the_in_process_engine_on_a_real_split(ray_cluster, covid_root, tmp_path):
    cases = load_split_cases("covid-qu-ex", "Val", covid_root.parent, sample_per_class=2, seed=3)
    from cxrxai.environment import DEMO_CHECKPOINT

    bundle = load_checkpoint(DEMO_CHECKPOINT, device="cpu")
    segmenter = LungSegmenter.load(device="cpu")
    settings = RunOptions(seed=5, method_params={"lime": {"n_samples": 40}})
    methods = ["gradcam", "lrp", "lime"]
    here = store.open_results(tmp_path / "here.sqlite")
    run_in_process(Evaluator(bundle, methods, settings, segmenter=segmenter), cases, here)
    there = store.open_results(tmp_path / "ray.sqlite")
    summary = RayEngine(RayOptions(workers=2)).run(
        Evaluator(bundle, methods, settings, segmenter=segmenter), cases, there
    )
    assert summary.units_done == len(cases) * 3 and summary.workers == 2
    ours, theirs = _rows(here), _rows(there)
    assert len(ours) > len(cases) * 3 * 8  # every region setting, LIME's superpixels too
    assert {r["lung_source"] for r in theirs} == {"reference"}
    _assert_same_rows(ours, theirs)


def test_a_killed_worker_costs_a_retry_not_a_row(ray_cluster, toy_bundle, tmp_path):
    cases = _toy_cases(tmp_path, 24)
    db = store.open_results(tmp_path / "ray.sqlite")
    engine = RayEngine(RayOptions(workers=2))
    killed: list[int] = []

    def kill_a_worker(result) -> None:
        if not killed:  # mid-run: the worker has cases queued and more will come
            killed.append(engine.pids[0])
            os.kill(engine.pids[0], signal.SIGKILL)

    engine.on_result = kill_a_worker
    summary = engine.run(Evaluator(toy_bundle, ["gradcam", "lrp"]), cases, db)
    assert killed and summary.retries >= 1
    assert engine.pids[0] != killed[0]  # a new worker took its place
    assert summary.units_done == 48
    here = _in_process_rows(toy_bundle, ["gradcam", "lrp"], cases, tmp_path / "here.sqlite")
    _assert_same_rows(here, _rows(db))  # none lost, none twice


def test_an_interrupted_driver_resumes(ray_cluster, toy_bundle, tmp_path):
    cases = _toy_cases(tmp_path, 8)
    db = store.open_results(tmp_path / "ray.sqlite")
    engine = RayEngine(RayOptions(workers=2))
    seen: list[str] = []

    def interrupt(result) -> None:
        seen.append(result.case_id)
        if len(seen) == 3:
            raise KeyboardInterrupt  # the user stops the driver

    engine.on_result = interrupt
    with pytest.raises(KeyboardInterrupt):
        engine.run(Evaluator(toy_bundle, ["gradcam"]), cases, db)
    assert len(store.done_units(db, toy_bundle.weights_sha256)) == 3
    summary = RayEngine(RayOptions(workers=2)).run(Evaluator(toy_bundle, ["gradcam"]), cases, db)
    assert summary.units_skipped == 3 and summary.units_done == 5
    here = _in_process_rows(toy_bundle, ["gradcam"], cases, tmp_path / "here.sqlite")
    _assert_same_rows(here, _rows(db))


def test_a_worker_that_cannot_start_says_why(ray_cluster, toy_bundle, tmp_path, monkeypatch):
    from cxrxai.evaluation import ray_engine

    real_of = ray_engine.WorkerSpec.of
    other_weights = classmethod(lambda cls, e: replace(real_of(e), weights_sha256="0" * 64))
    monkeypatch.setattr(ray_engine.WorkerSpec, "of", other_weights)
    db = store.open_results(tmp_path / "ray.sqlite")
    with pytest.raises(CxrxaiError, match=r"other weights .* same files"):
        RayEngine(RayOptions(workers=1)).run(
            Evaluator(toy_bundle, ["gradcam"]), _toy_cases(tmp_path, 1), db
        )
    assert db[store.LOCALISATION].count == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxrxai", "evaluate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"CXRXAI_BACKGROUND_MAPS": "0"},
    )


def _ray_servers() -> set[int]:
    """Process ids of the Ray head services (GCS) running on this machine."""
    found = subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def test_cli_joins_a_cluster_or_starts_and_stops_its_own(ray_cluster, covid_root, tmp_path):
    common = ["--limit", "1", "--methods", "gradcam", "--no-lung-model", "--no-cache",
              "--data-root", str(covid_root.parent)]  # fmt: skip
    joined = _cli("--engine", "ray", "--address", ray_cluster, "--db", str(tmp_path / "a.sqlite"),
                  *common)  # fmt: skip
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert "Ray: 2 worker(s), 0 GPU(s) each" in joined.stdout
    assert "3 case x method units computed" in joined.stdout
    before = _ray_servers()
    own = _cli("--engine", "ray", "--workers", "1", "--db", str(tmp_path / "b.sqlite"), *common)
    assert own.returncode == 0, own.stderr[-2000:]
    assert "Ray: 1 worker(s)" in own.stdout and "Traceback" not in own.stderr
    assert not _ray_servers() - before  # the local instance it started is stopped
    a = store.open_results(tmp_path / "a.sqlite")
    b = store.open_results(tmp_path / "b.sqlite")
    _assert_same_rows(_rows(a), _rows(b))


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(CxrxaiError, match=r"pip install -r requirements-ray\.txt"):
        require_ray()
    assert main(["evaluate", "--engine", "ray", "--methods", "gradcam"]) == 2
    err = capsys.readouterr().err
    assert "requirements-ray.txt" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers go"),
        (["--address", "auto"], "--address go"),
        (["--engine", "ray", "--workers", "0"], "--workers must be at least 1"),
        (["--engine", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be >= 0"),
    ],
)
def test_engine_options_are_checked_before_any_work(args, message, capsys):
    if "ray" in args:
        _ray()
    assert main(["evaluate", "--methods", "gradcam", *args]) == 2
    assert message in capsys.readouterr().err


def test_maps_computed_elsewhere_score_the_same_on_ray(ray_cluster, toy_bundle, tmp_path):
    from cxrxai.explain.external import ExternalMaps
    from cxrxai.explain.registry import get_explainer

    cases = _toy_cases(tmp_path, 4)
    (tmp_path / "maps" / "sick").mkdir(parents=True)
    for case in cases:
        image = case.load_image().pixels
        values = get_explainer("gradcam").explain(toy_bundle, image, target="sick")[0].numpy()
        np.save(tmp_path / "maps" / "sick" / f"{Path(case.image_path).stem}.npy", values)
    external = ExternalMaps(tmp_path / "maps", "theirs")
    here = store.open_results(tmp_path / "here.sqlite")
    run_in_process(Evaluator(toy_bundle, [], external=external), cases, here)
    db = store.open_results(tmp_path / "ray.sqlite")
    summary = RayEngine(RayOptions(workers=2)).run(
        Evaluator(toy_bundle, [], external=external), cases, db
    )
    assert summary.units_done == 4 and not summary.maps_missing
    assert {r["method"] for r in _rows(db)} == {"theirs"}
    _assert_same_rows(_rows(here), _rows(db))


def test_more_than_the_cluster_has_is_refused_at_once(ray_cluster, toy_bundle, tmp_path):
    db = store.open_results(tmp_path / "ray.sqlite")
    cases = _toy_cases(tmp_path, 2)
    with pytest.raises(CxrxaiError, match=r"--cpus-per-worker 64: the cluster has 2 CPU"):
        RayEngine(RayOptions(cpus_per_worker=64)).run(Evaluator(toy_bundle, ["gradcam"]), cases, db)
    with pytest.raises(CxrxaiError, match=r"--gpus-per-worker 1: the cluster has 0 GPU"):
        RayEngine(RayOptions(gpus_per_worker=1)).run(Evaluator(toy_bundle, ["gradcam"]), cases, db)
