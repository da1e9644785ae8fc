"""Batch evaluation: explanations and every localisation metric for every case of a split.

For each case, the targets are the case's labels that are outputs of the model (or, with
``targets="predicted"``, the labels the model calls positive: any dataset then gets the
shares of relevance inside the lungs and in the border band, without a truth); the
truth of a target is the union of the case's finding annotations with that label
(masks, or boxes filled), and its boxes per radiologist feed the box IoU. Each case x
method is one unit, computed (heatmaps through the disk cache), scored at every region
setting in one batch and written in one transaction; units already in the database are
skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
import torch

from cxrxai.cases import Annotation, Case, findings_of
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation import store
from cxrxai.explain.base import Heatmap
from cxrxai.explain.cache import HeatmapCache
from cxrxai.explain.external import ExternalMaps
from cxrxai.explain.params import variant
from cxrxai.explain.registry import get_explainer
from cxrxai.lungs import LungSegmenter, lung_annotation
from cxrxai.metrics import faithfulness as faith
from cxrxai.metrics.boxes import aggregate_box_iou
from cxrxai.metrics.regions import TOP_PERCENTS, region, region_boxes
from cxrxai.metrics.registry import localisation_metrics
from cxrxai.runner import ModelBundle

RegionSetting = tuple[str, float]
DEFAULT_REGIONS: tuple[RegionSetting, ...] = (
    *(("top-percent", float(p)) for p in TOP_PERCENTS),
    ("otsu", 0.0),
    ("threshold", 0.5),
)
SUPERPIXEL_REGIONS: tuple[RegionSetting, ...] = (
    ("top-superpixels", 5.0),
    ("top-superpixels", 10.0),
)


TARGETS = ("labels", "predicted")


@dataclass
class RunOptions:
    regions: tuple[RegionSetting, ...] = DEFAULT_REGIONS
    empty: str = "nan"
    within_lungs: bool = False
    targets: str = "labels"  # or "predicted": the model's positive labels
    faithfulness: bool = False
    seed: int = 0
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Summary:
    units_done: int = 0
    units_skipped: int = 0  # already in the database
    cases_without_target: list[str] = field(default_factory=list)
    maps_missing: list[str] = field(default_factory=list)  # external maps not in the folder


def truth_for(
    annotations: Iterable[Annotation], label: str, shape: tuple[int, int]
) -> tuple[np.ndarray, dict]:
    """The union mask of the ``label`` findings among ``annotations`` and their boxes per
    author."""
    mask = np.zeros(shape, dtype=bool)
    boxes: dict[str, list] = {}
    for annotation in findings_of(annotations, label):
        mask |= annotation.to_mask(shape)
        if annotation.kind == "box" and annotation.box is not None:
            boxes.setdefault(annotation.author or "unknown", []).append(annotation.box)
    return mask, boxes


def regions_for(heatmap: Heatmap, regions: Iterable[RegionSetting]) -> list[RegionSetting]:
    """The region settings a heatmap can be scored at: top-N superpixels are added for
    superpixel methods (LIME, KernelSHAP) and dropped for every other method."""
    chosen = list(regions)
    if heatmap.segments is not None:
        return chosen + [s for s in SUPERPIXEL_REGIONS if s not in chosen]
    return [s for s in chosen if s[0] != "top-superpixels"]


def score_heatmap(
    heatmap: Heatmap,
    truth: np.ndarray,
    boxes: dict,
    settings: list[RegionSetting],
    empty: str = "nan",
    lungs: np.ndarray | None = None,
    spacing: tuple[float, float] | None = None,
    within_lungs: bool = False,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The regions (S, H, W) and one dict of metrics per region setting, all settings
    scored in one batch. ``lungs`` (reference or predicted) gives the lung share; with
    ``within_lungs`` the regions are also confined to them."""
    device = heatmap.values.device
    maps = heatmap.values.float()
    lungs_t = torch.as_tensor(np.array(lungs), device=device) if lungs is not None else None
    within = lungs_t if within_lungs else None
    regions = torch.stack(
        [region(maps, mode, value, heatmap.segments, within) for mode, value in settings]
    )
    truth_t = torch.from_numpy(truth).to(device).expand_as(regions)
    batch = localisation_metrics(maps.expand_as(regions), regions, truth_t, empty, spacing, lungs_t)
    rows = []
    for i, (mode, value) in enumerate(settings):
        row: dict[str, Any] = {"mode": mode, "value": value}
        row |= {name: _number(v[i]) for name, v in batch.items()}
        if boxes:
            row |= aggregate_box_iou(region_boxes(regions[i]), boxes)
        rows.append(row)
    return regions, rows


def region_setting_metrics(
    heatmap: Heatmap,
    annotations: Iterable[Annotation],
    label: str,
    mode: str,
    value: float,
    empty: str = "nan",
    lungs: np.ndarray | None = None,
    spacing: tuple[float, float] | None = None,
    within_lungs: bool = False,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], dict[str, Any]]:
    """For one region setting (the Review page's sliders): the region, its boxes and every
    metric against the ``label`` findings. Recomputes no explanation."""
    truth, boxes = truth_for(annotations, label, heatmap.shape)
    regions, (row,) = score_heatmap(
        heatmap, truth, boxes, [(mode, value)], empty, lungs, spacing, within_lungs
    )
    row["n_truth_pixels"] = int(truth.sum())
    return regions[0].cpu().numpy(), region_boxes(regions[0]), row


def _number(value: torch.Tensor) -> float | None:
    """SQLite stores NaN as NULL: a missing value stays missing, never 0."""
    number = float(value)
    return None if np.isnan(number) else number


@dataclass
class Unit:
    """All rows of one case x method (``method`` = the variant name rows carry): written
    in one transaction."""

    case_id: str
    method: str
    localisation: list[dict[str, Any]]
    faithfulness: list[dict[str, Any]]


@dataclass
class CaseResult:
    """What explaining and scoring one case gave: rows only (no maps), so an engine's
    worker can send it to the process that writes the database."""

    case_id: str
    units: list[Unit] = field(default_factory=list)
    without_target: bool = False  # targets="predicted" and the model predicts nothing
    maps_missing: list[str] = field(default_factory=list)
    error: str | None = None  # what stopped the case (the units before it are kept)


@dataclass
class Work:
    """One case and the methods it still needs (by the names given to the evaluator)."""

    case: Case
    methods: list[str]


class Evaluator:
    """Explains and scores cases with one model: built once per process (each worker of
    the Ray engine builds its own), it touches no database.

    Lung fields: a case's reference lung mask, else the ``segmenter``'s prediction (rows
    say which, column ``lungs``); they give the lung share of every map and, with
    ``within_lungs``, confine the regions. Without either, both are left out (NULL).

    ``external``: maps computed elsewhere, scored as the method ``external.name`` (then
    ``methods`` is ``[external.name]``); a case whose map is missing is listed in
    ``CaseResult.maps_missing``, not scored.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        methods: list[str],
        options: RunOptions | None = None,
        cache: HeatmapCache | None = None,
        segmenter: LungSegmenter | None = None,
        external: ExternalMaps | None = None,
    ) -> None:
        self.bundle, self.cache, self.segmenter, self.external = bundle, cache, segmenter, external
        self.options = options = options or RunOptions()
        if options.targets not in TARGETS:
            raise CxrxaiError(f"targets must be one of {TARGETS}, got '{options.targets}'")
        self.methods = [external.name] if external is not None else list(methods)
        self.explainers = {
            m: get_explainer(m, **options.method_params.get(m, {}))
            for m in self.methods
            if external is None
        }
        for explainer in self.explainers.values():
            explainer.check(bundle)
        # rows carry the variant (gradcam(layer=blocks.5)): a run with other settings is
        # new work, never "already done", and its rows sit beside the defaults' for comparison
        self.names = {
            m: m if external is not None else variant(m, options.method_params.get(m, {}))
            for m in self.methods
        }

    def label_targets(self, case: Case) -> list[str]:
        """The case's labels that the model outputs."""
        return [label for label in case.labels if label in self.bundle.labels]

    def targets(self, case: Case, probs: np.ndarray) -> list[str]:
        """The labels explained for ``case``: its labels the model outputs, or with
        ``targets="predicted"`` the labels the model predicts (possibly none)."""
        if self.options.targets == "predicted":
            return [self.bundle.labels[i] for i in self.bundle.card.positives(probs)]
        return self.label_targets(case)

    def heatmap(self, method: str, image: np.ndarray, label: str) -> Heatmap:
        """``method``'s map of ``image`` for ``label`` (through the cache when there is one)."""
        index = self.bundle.labels.index(label)
        return _explain(
            self.explainers[method], self.bundle, image, index, self.options, self.cache
        )

    def plan(
        self, cases: Iterable[Case], db: sqlite_utils.Database, summary: Summary
    ) -> Iterable[Work]:
        """The work left: each case with the methods not yet in ``db`` (counted in
        ``summary.units_skipped``); cases none of whose labels the model outputs are listed
        in ``summary.cases_without_target``. Reads no image."""
        done = store.done_units(db, self.bundle.weights_sha256)
        for case in cases:
            if not self.label_targets(case) and self.options.targets == "labels":
                summary.cases_without_target.append(case.case_id)
                continue
            pending = [m for m in self.methods if (case.case_id, self.names[m]) not in done]
            summary.units_skipped += len(self.methods) - len(pending)
            if pending:
                yield Work(case, pending)

    def evaluate(self, case: Case, methods: list[str]) -> CaseResult:
        """Explain and score ``case`` with ``methods`` (its image is read here). A clear
        error (an unreadable image, a NaN map) ends the case: ``CaseResult.error`` says
        what, and the units finished before it are kept."""
        result = CaseResult(case.case_id)
        try:
            self._evaluate(case, methods, result)
        except CxrxaiError as exc:
            result.error = str(exc)
        return result

    def _evaluate(self, case: Case, methods: list[str], result: CaseResult) -> None:
        bundle, options, external = self.bundle, self.options, self.external
        try:
            xray = case.load_image()
        except CxrxaiError as exc:
            raise CxrxaiError(f"Case '{case.case_id}': {exc}") from exc
        image = xray.pixels
        probs = bundle.predict_proba(image)[0]
        targets = self.targets(case, probs)
        if options.targets == "predicted" and not targets:  # multi-label, none above threshold
            result.without_target = True
            return
        lungs_annotation = lung_annotation(case, image, self.segmenter)
        lungs = lungs_annotation.to_mask(image.shape) if lungs_annotation else None
        if options.within_lungs and lungs is None:
            raise CxrxaiError(
                f"Case '{case.case_id}' has no lung mask and no lung-field model was given: "
                "--within-lungs needs one of them (leave out --no-lung-model)."
            )
        lung_source = (
            None
            if lungs_annotation is None
            else ("predicted" if lungs_annotation.predicted else "reference")
        )
        spacing = xray.meta.pixel_spacing_mm
        for method in methods:
            name = self.names[method]
            unit = Unit(case.case_id, name, [], [])
            for label in targets:
                index = bundle.labels.index(label)
                if external is not None:
                    found = external.heatmap(_stems(case), label, index, image.shape)
                    if found is None:
                        result.maps_missing.append(f"{case.case_id} ({label})")
                        continue
                    heatmap = found
                else:
                    heatmap = self.heatmap(method, image, label)
                truth, boxes = truth_for(case.annotations, label, image.shape)
                base = _unit_row(bundle, case, name, label, probs, index)
                try:
                    _, rows = score_heatmap(
                        heatmap,
                        truth,
                        boxes,
                        regions_for(heatmap, options.regions),
                        options.empty,
                        lungs,
                        spacing,
                        options.within_lungs,
                    )
                except CxrxaiError as exc:  # e.g. a NaN map: say which case and method
                    raise CxrxaiError(
                        f"Case '{case.case_id}', {name} for {label}: {exc} Cases already "
                        "stored are kept; rerun without this method to go on."
                    ) from exc
                for row in rows:
                    unit.localisation.append(
                        base
                        | row
                        | {
                            "unit": "mm" if spacing else "px",
                            "n_truth_pixels": int(truth.sum()),
                            "n_raters": len(boxes),
                            "lung_source": lung_source,
                        }
                    )
                if options.faithfulness:
                    unit.faithfulness.append(
                        _faithfulness_row(bundle, image, heatmap, index)
                        | {k: base[k] for k in store.UNIT_KEY}
                    )
            if unit.localisation or unit.faithfulness:
                result.units.append(unit)


def record(db: sqlite_utils.Database, result: CaseResult, summary: Summary) -> None:
    """Write a case's units, one transaction each (the engines' single writer), and
    count them in ``summary``; then raise the case's error, if it had one."""
    if result.without_target:
        summary.cases_without_target.append(result.case_id)
    summary.maps_missing.extend(result.maps_missing)
    for unit in result.units:
        store.write_unit(db, unit.localisation, unit.faithfulness)
        summary.units_done += 1
    if result.error is not None:
        raise CxrxaiError(result.error)


def evaluate_cases(
    bundle: ModelBundle,
    cases: Iterable[Case],
    methods: list[str],
    db: sqlite_utils.Database,
    options: RunOptions | None = None,
    cache: HeatmapCache | None = None,
    progress: Callable[[list[Work]], Iterable[Work]] = lambda w: w,
    segmenter: LungSegmenter | None = None,
    external: ExternalMaps | None = None,
) -> Summary:
    """The in-process engine: explain and score every case x method not yet in ``db``,
    one transaction per unit (see :class:`Evaluator` for lungs and external maps)."""
    evaluator = Evaluator(bundle, methods, options, cache, segmenter, external)
    return run_in_process(evaluator, cases, db, progress)


def run_in_process(
    evaluator: Evaluator,
    cases: Iterable[Case],
    db: sqlite_utils.Database,
    progress: Callable[[list[Work]], Iterable[Work]] = lambda w: w,
) -> Summary:
    """The default engine: the work, one case after another, in this process."""
    summary = Summary()
    for work in progress(list(evaluator.plan(cases, db, summary))):
        record(db, evaluator.evaluate(work.case, work.methods), summary)
    return summary


def _stems(case: Case) -> list[str]:
    """Names a case's external map may carry: its image's stem, and for CheXpert images
    (CheXlocalize) the patient_study_view id."""
    path = Path(case.image_path)
    stems = [path.stem]
    if case.dataset == "chexlocalize":
        stems.insert(0, case.case_id.split("/", 1)[-1])
    return stems


def _explain(explainer, bundle, image, index, options: RunOptions, cache) -> Heatmap:
    if cache is not None:
        return cache.explain(explainer, bundle, image, target=index, seed=options.seed)[0]
    return explainer.explain(bundle, image, target=index, seed=options.seed)[0]


def _unit_row(
    bundle: ModelBundle, case: Case, method: str, label: str, probs: np.ndarray, index: int
) -> dict[str, Any]:
    positives = bundle.card.positives(probs)
    predicted = ";".join(bundle.labels[i] for i in positives)
    correct = index in positives
    return {
        "checkpoint_sha256": bundle.weights_sha256,
        "case_id": case.case_id,
        "dataset": case.dataset,
        "split": case.split,
        "case_labels": ";".join(case.labels),
        "method": method,
        "target": label,
        "predicted": predicted,
        "correct": int(correct),
        "probability": float(probs[index]),
    }


def _faithfulness_row(
    bundle: ModelBundle, image: np.ndarray, heatmap: Heatmap, index: int
) -> dict[str, Any]:
    curves = faith.deletion_insertion(bundle, image, heatmap.values, index)
    rows = faith.pixel_importance(bundle, image, heatmap.values, index)
    return {
        "deletion_auc": curves.deletion_auc,
        "insertion_auc": curves.insertion_auc,
        "pixel_importance": store.settings_json(
            rows=[
                {"replacement": r.replacement, "percent": r.percent, "drop": r.drop} for r in rows
            ]
        ),
    }
