"""Reader localisation: the boxes a rater draws where the finding is, scored against the
reference annotation and against each panel's region, and exported as a manifest so that
readers' marks can serve as the truth in ``evaluate``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from cxrxai.cases import Annotation
from cxrxai.evaluation.evaluate import truth_for
from cxrxai.explain.base import Heatmap
from cxrxai.metrics.regions import region
from cxrxai.pacs.results import CaseResult, TruthBox

Box = tuple[float, float, float, float]
MARK_REGION = ("top-percent", 10.0)  # each panel's region the marks are compared with
MANIFEST_COLUMNS = (
    "image", "case_id", "split", "labels", "kind", "label", "author",
    "x_min", "y_min", "x_max", "y_max",
)  # fmt: skip


def marks_mask(boxes: Iterable[Box], shape: tuple[int, int]) -> np.ndarray:
    """The union of the boxes as a bool mask of ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        mask |= Annotation("box", "mark", box=box).to_mask(shape)
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = int((a | b).sum())
    return None if union == 0 else float((a & b).sum()) / union


def score_marks(
    boxes: list[Box],
    shape: tuple[int, int],
    annotations: list[Annotation],
    label: str,
    heatmaps: Mapping[str, Heatmap],
) -> tuple[float | None, dict[str, float | None]]:
    """IoU of the marks with the reference annotation of ``label`` (None without one),
    and with each panel's top-10 % region, per method."""
    marks = marks_mask(boxes, shape)
    truth, _ = truth_for(annotations, label, shape)
    reference = _iou(marks, truth) if truth.any() else None
    by_method = {}
    for method, heatmap in heatmaps.items():
        values = heatmap.values.float()
        mode, value = MARK_REGION
        panel = region(values, mode, value, heatmap.segments, None).cpu().numpy()
        by_method[method] = _iou(marks, panel)
    return reference, by_method


def manifest_rows(marks: list[dict[str, Any]], images: Mapping[str, str]) -> list[dict]:
    """Readers' marks as rows of cxrxai's CSV manifest (one box each, the rater's
    pseudonym as the author), for ``evaluate --dataset manifest``; ``images`` maps a case
    id to its image path."""
    return [
        {
            "image": images.get(mark["case_id"], ""),
            "case_id": mark["case_id"],
            "split": "readers",
            "labels": mark["target"],
            "kind": "box",
            "label": mark["target"],
            "author": mark["rater"],
            "x_min": mark["x_min"],
            "y_min": mark["y_min"],
            "x_max": mark["x_max"],
            "y_max": mark["y_max"],
        }
        for mark in marks
    ]


def box_tuples(boxes: list[Annotation]) -> list[Box]:
    """Boxes of drawn annotations as plain tuples (what the service stores)."""
    return [tuple(float(v) for v in a.box) for a in boxes if a.box is not None]  # type: ignore[misc]


def marks_results(
    marks: list[dict[str, Any]], images: Mapping[str, str]
) -> list[tuple[str, CaseResult]]:
    """Readers' marks as results to file on a PACS (``study export --to-pacs``): per case
    with an image, its marks as boxes authored by the rater (pseudonym unless real names
    were asked); no probabilities or maps - those are the model's, these the readers'."""
    by_case: dict[str, list[TruthBox]] = {}
    for mark in marks:
        box = tuple(float(mark[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
        by_case.setdefault(mark["case_id"], []).append(
            TruthBox(mark["target"], str(mark["rater"]), box)
        )
    return [
        (images[case_id], CaseResult({}, (), (), tuple(boxes)))
        for case_id, boxes in by_case.items()
        if images.get(case_id)
    ]
