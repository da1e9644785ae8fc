"""The Ray engine of ``evaluate``: the same work as the in-process engine, spread over
Ray actors on one machine or a cluster.

Each worker is an actor that loads the checkpoint (and the lung-field model) once, on a
GPU when it is given one, then takes cases: it reads their images itself, explains and
scores them with :class:`~cxrxai.evaluation.evaluate.Evaluator` - the in-process engine's
own code, so rows are the same - and sends back rows only. The driver alone writes the
SQLite database through :func:`~cxrxai.evaluation.evaluate.record`, one transaction per
case x method, so resuming and the unique keys mean what they mean in one process.

A worker that dies (a killed process, a lost node) costs a retry: its unfinished cases go
to a new worker, up to ``RayOptions.retries`` times per case; a row is written only when
its case's result has arrived, and written rows are keyed, so none is lost or doubled. An
interrupted driver resumes like the in-process engine (units already stored are skipped).

Ray is an optional extra (``requirements-ray.txt``): nothing here imports it until the
engine runs. Ray moves cases and rows between its processes with pickle: join only a
cluster you control (docs/security.md).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
import torch

import cxrxai
from cxrxai.cases import Case
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.evaluate import CaseResult, Evaluator, RunOptions, Summary, Work, record
from cxrxai.explain.external import ExternalMaps

START_TIMEOUT_S = 600  # a worker's start: a cluster may first have to add a node

INSTALL_HINT = (
    "install it with '.venv/bin/pip install -r requirements-ray.txt' (the test command "
    "does), or leave out --engine ray to run in this process"
)


def require_ray() -> Any:
    """The ``ray`` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise CxrxaiError(f"--engine ray needs Ray, an optional extra: {INSTALL_HINT}.") from exc
    return ray


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker loads: paths must name the same files on every node (a shared
    file system), which the weights' hash checks."""

    checkpoint: str
    weights_sha256: str
    precision: str
    compile: bool
    methods: tuple[str, ...]
    options: RunOptions
    lung_model: str | None = None
    cache_dir: str | None = None
    external: ExternalMaps | None = None
    code: str = ""  # the driver's cxrxai version and metrics definition

    @classmethod
    def of(cls, evaluator: Evaluator) -> WorkerSpec:
        bundle = evaluator.bundle
        if bundle.path is None:
            raise CxrxaiError(
                "--engine ray loads the checkpoint in each worker and needs it as a folder: "
                "save the model with save_checkpoint (or import-xrv) first."
            )
        segmenter, cache = evaluator.segmenter, evaluator.cache
        return cls(
            checkpoint=str(bundle.path.resolve()),
            weights_sha256=bundle.weights_sha256,
            precision=bundle.precision,
            compile=bundle.compile,
            methods=tuple(evaluator.methods),
            options=evaluator.options,
            lung_model=None if segmenter is None else str(segmenter.folder.resolve()),
            cache_dir=None if cache is None else str(cache.directory.resolve()),
            external=evaluator.external,
            code=_code_version(),
        )


class EvaluationWorker:
    """A Ray actor (wrapped by :meth:`RayEngine.run`): the checkpoint loaded once, then
    one case per call."""

    def __init__(self, spec: WorkerSpec, device: str, threads: int = 1) -> None:
        self.error: str | None = None
        _use_threads(threads)
        try:
            self.evaluator = _evaluator(spec, device)
        except CxrxaiError as exc:  # said by the driver, not as a worker's traceback
            self.error = f"A worker on {os.uname().nodename} could not start: {exc}"

    def ready(self) -> tuple[int, str | None]:
        """This worker's process id, and why it could not start (None when it can work)."""
        return os.getpid(), self.error

    def evaluate(self, work: Work) -> CaseResult:
        return self.evaluator.evaluate(work.case, work.methods)


def _use_threads(threads: int) -> None:
    """Keep a worker to the CPUs it reserved: torch and numba (the metric kernels) would
    each start a thread per core of the node, and workers sharing a node would fight."""
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _evaluator(spec: WorkerSpec, device: str) -> Evaluator:
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.explain.cache import HeatmapCache
    from cxrxai.lungs import LungSegmenter

    if spec.code != _code_version():
        raise CxrxaiError(
            f"this node runs cxrxai {_code_version()}, the driver {spec.code}: rows must come "
            "from the same code; install the same version on every node."
        )
    bundle = load_checkpoint(spec.checkpoint, device, spec.precision, spec.compile)
    if bundle.weights_sha256 != spec.weights_sha256:
        raise CxrxaiError(
            f"checkpoint '{spec.checkpoint}' on this node has other weights (sha256 "
            f"{bundle.weights_sha256[:16]}) than the driver's ({spec.weights_sha256[:16]}); "
            "give every node the same files."
        )
    segmenter = LungSegmenter.load(spec.lung_model, device) if spec.lung_model else None
    cache = HeatmapCache(spec.cache_dir) if spec.cache_dir else None
    return Evaluator(bundle, list(spec.methods), spec.options, cache, segmenter, spec.external)


@dataclass
class RayOptions:
    """How the engine uses Ray.

    Args:
        address: of an existing cluster (``ray://...``, ``host:port`` or ``auto``); None
            starts a local Ray instance for the run and stops it after.
        workers: actors to start; None = one per GPU when workers get GPUs, else one per
            ``cpus_per_worker`` CPUs of the cluster.
        gpus_per_worker: None = 1 when the cluster has a GPU, else 0; fractions share a GPU.
        cpus_per_worker: CPUs each actor reserves (its torch threads).
        retries: times a case is given to a new worker after its worker died.
        queued_per_worker: cases sent ahead to each worker, so none waits for the driver.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    retries: int = 3
    queued_per_worker: int = 2

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise CxrxaiError(f"--workers must be at least 1, got {self.workers}.")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise CxrxaiError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}.")
        if self.cpus_per_worker <= 0:
            raise CxrxaiError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}.")


@dataclass
class RaySummary(Summary):
    workers: int = 0
    gpus_per_worker: float = 0.0
    retries: int = 0  # cases given to a new worker after theirs died


class RayEngine:
    """Runs an :class:`Evaluator`'s work on Ray actors; the calling process writes ``db``.

    ``on_result`` is called in the driver after each case is written (tests use it to
    kill a worker mid-run); ``pids`` are the workers' process ids (on their nodes).
    """

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()
        self.pids: list[int] = []
        self.on_result: Callable[[CaseResult], None] | None = None

    def run(
        self,
        evaluator: Evaluator,
        cases: Iterable[Case],
        db: sqlite_utils.Database,
        progress: Callable[[int], Any] | None = None,
    ) -> RaySummary:
        """Evaluate every case x method not yet in ``db``. ``progress(total)`` may return
        a bar with ``update(n)`` and ``close()`` (tqdm's signature)."""
        ray = require_ray()
        summary = RaySummary()
        work = deque(evaluator.plan(cases, db, summary))
        spec = WorkerSpec.of(evaluator)  # before Ray starts: a clear error costs nothing
        if not work:
            return summary
        started = not ray.is_initialized()
        if started:
            _start(ray, self.options.address)
        try:
            self._run(ray, spec, work, db, summary, progress)
        finally:
            if started:
                ray.shutdown()
        return summary

    def _run(self, ray, spec, work, db, summary, progress) -> None:
        options = self.options
        resources = ray.cluster_resources()
        gpus = options.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if gpus > resources.get("GPU", 0):
            raise CxrxaiError(
                f"--gpus-per-worker {gpus:g}: the cluster has {resources.get('GPU', 0):g} GPU(s)."
            )
        if options.cpus_per_worker > resources.get("CPU", 0):
            raise CxrxaiError(
                f"--cpus-per-worker {options.cpus_per_worker:g}: the cluster has "
                f"{resources.get('CPU', 0):g} CPU(s)."
            )
        count = options.workers or _default_workers(resources, gpus, options.cpus_per_worker)
        count = min(count, len(work))
        summary.workers, summary.gpus_per_worker = count, gpus
        actor = ray.remote(EvaluationWorker).options(
            num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=0
        )
        device = "cuda" if gpus > 0 else "cpu"
        threads = max(1, int(options.cpus_per_worker))
        workers = [actor.remote(spec, device, threads) for _ in range(count)]
        bar = None
        try:
            self.pids = [self._ready(ray, w) for w in workers]
            bar = progress(len(work)) if progress else None
            self._dispatch(ray, actor, (spec, device, threads), workers, work, db, summary, bar)
        finally:
            if bar is not None:
                bar.close()
            for worker in workers:
                ray.kill(worker)

    @staticmethod
    def _ready(ray, worker) -> int:
        """Wait for a worker to load the model; its pid, or a clear error."""
        try:
            pid, error = ray.get(worker.ready.remote(), timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as exc:
            raise CxrxaiError(
                f"A worker did not start within {START_TIMEOUT_S} s: the cluster has no free "
                "place for it (see --workers, --gpus-per-worker, --cpus-per-worker and "
                "'ray status')."
            ) from exc
        except ray.exceptions.RayActorError as exc:  # died while starting (not a clear error)
            raise CxrxaiError(f"A worker died while starting: {_first_line(exc)}") from exc
        if error is not None:
            raise CxrxaiError(error)
        return pid

    def _dispatch(self, ray, actor, arguments, workers, work, db, summary, bar) -> None:
        options = self.options
        attempts: dict[str, int] = {}
        flying: dict[Any, tuple[int, Any, Work]] = {}  # result -> (slot, its worker, work)
        load = [0] * len(workers)
        while work or flying:
            while work and min(load) < options.queued_per_worker:
                slot = load.index(min(load))
                item = work.popleft()
                flying[workers[slot].evaluate.remote(item)] = (slot, workers[slot], item)
                load[slot] += 1
            (ref,), _ = ray.wait(list(flying), num_returns=1)
            slot, worker, item = flying.pop(ref)
            load[slot] -= 1
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker died with the case
                case_id = item.case.case_id
                attempts[case_id] = attempts.get(case_id, 0) + 1
                if attempts[case_id] > options.retries:
                    raise CxrxaiError(
                        f"Case '{case_id}': its worker died {attempts[case_id]} times (last: "
                        f"{_first_line(exc)}); cases already stored are kept: rerun to go on."
                    ) from exc
                summary.retries += 1
                work.appendleft(item)
                if workers[slot] is worker:  # the first of its cases to come back failed
                    ray.kill(worker)
                    workers[slot] = actor.remote(*arguments)  # placed anew by Ray
                    self.pids[slot] = self._ready(ray, workers[slot])
                continue
            record(db, result, summary)
            if bar is not None:
                bar.update(1)
            if self.on_result is not None:
                self.on_result(result)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _default_workers(resources: dict[str, float], gpus: float, cpus: float) -> int:
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1) // cpus))


def _code_version() -> str:
    from cxrxai.evaluation.store import METRICS_VERSION

    return f"{cxrxai.__version__} (metrics v{METRICS_VERSION})"


def runtime_env() -> dict[str, Any]:
    """What a driver joining Ray passes: workers import this very copy of cxrxai (its
    numba caches too). On a cluster the path must hold the same code on every node, as the
    checkpoint and the images must be at the same paths."""
    source = str(Path(cxrxai.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def _start(ray, address: str | None) -> None:
    """Join the cluster at ``address``, else start a local instance with this machine's
    CPUs (and GPUs). Ray's own start-up lines are kept quiet; workers' warnings still
    reach the terminal."""
    import logging

    try:
        if address is None:
            ray.init(
                include_dashboard=False, logging_level=logging.WARNING, runtime_env=runtime_env()
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env())
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
        raise CxrxaiError(f"Could not start or join {where}: {_first_line(exc)}") from exc
