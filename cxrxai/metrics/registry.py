"""Every metric, each in one place: its name, label, direction, unit and reference
computation; and one batched entry point for the pixel metrics.

A pixel metric's ``compute`` is its definition: batched torch over a
:class:`MetricInputs` (maps, regions and truth, (B, H, W), on any device) returning one
value per item. On the CPU, :data:`ACCELERATED` metrics come from one fused numba kernel
(:mod:`cxrxai.metrics.cpu_kernels`) instead; a generated test checks each against its
reference. Box IoU (per radiologist, from boxes) and the faithfulness scores (from model
re-evaluations) are registered here too, with where they are computed.

Adding a pixel metric: one :class:`Metric` with its ``compute`` below, and one test of
its values on hand-made inputs; the results database adds its column by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import cpu_kernels, overlap
from cxrxai.metrics.distances import Spacing, distances_torch

BORDER_FRACTION = 0.1  # the border band: the outer 10 % of each side (markers, text)
# A map is flagged as a possible shortcut when less than this share of its positive
# relevance falls inside the lung fields ("most relevance outside the lungs").
SHORTCUT_LUNG_SHARE = 0.5


@dataclass
class MetricInputs:
    """One batch to score: ``maps`` float (B, H, W) heatmaps, ``regions`` their binary
    regions, ``truth`` the true masks, all on one device; ``empty`` the empty-mask
    convention (:data:`cxrxai.metrics.overlap.EMPTY_MODES`); ``spacing`` mm per pixel;
    ``lungs`` the lung fields (reference or predicted), None when unknown."""

    maps: torch.Tensor
    regions: torch.Tensor
    truth: torch.Tensor
    empty: str = "nan"
    spacing: Spacing = (1.0, 1.0)
    lungs: torch.Tensor | None = None

    @cached_property
    def counts(self) -> dict[str, torch.Tensor]:
        """IoU, Dice, precision and recall from one confusion count (shared)."""
        return overlap.region_scores(self.regions, self.truth, self.empty)

    @cached_property
    def distances(self) -> dict[str, torch.Tensor]:
        """Hausdorff, HD95 and mean distance from one pair of distance transforms."""
        return distances_torch(self.regions, self.truth, self.spacing)


Compute = Callable[[MetricInputs], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool
    unit: str = ""  # "px" for distances (or "mm" when the pixel spacing is known)
    compute: Compute | None = field(default=None, compare=False)  # pixel metrics
    computed_in: str = "cxrxai.metrics.registry"  # where a metric without compute is
    in_report: bool = False  # a column of `report`'s summary table
    compared: bool = False  # offered for the Cases page's paired comparisons

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


def _share(maps: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Share of each map's positive relevance where ``where`` is true (NaN without any).

    A map expanded over the batch (one map scored at several region settings, as
    ``evaluate`` does) is summed once: these shares depend on the map alone, and at a
    radiograph's full size each copy is a pass over millions of pixels."""
    if maps.dim() == 3 and maps.shape[0] > 1 and maps.stride(0) == 0:
        if where.dim() < 3 or where.stride(0) == 0:
            single = _share(maps[:1], where[:1] if where.dim() == 3 else where)
            return single.repeat(maps.shape[0])
    positive = maps.float().clamp(min=0)
    total = positive.flatten(1).sum(1)
    inside = (positive * where.to(positive.device, torch.bool)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), float("nan"))


def _border(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the border band (:data:`BORDER_FRACTION` of each side, >= 1)."""
    return max(1, round(height * BORDER_FRACTION)), max(1, round(width * BORDER_FRACTION))


def border_relevance(inputs: MetricInputs) -> torch.Tensor:
    """Share of the map's positive relevance in the image's border band - the outer
    :data:`BORDER_FRACTION` of each side, where burned-in markers and text sit (LRP put
    18 % of its relevance on a 1.4 % corner of an NIH radiograph). A shortcut flag: high
    values mean the explanation points at the frame, not the chest. NaN for a map with no
    positive relevance; defined without a truth (so never NaN for an empty one)."""
    height, width = inputs.maps.shape[-2:]
    rows, cols = _border(height, width)
    band = torch.ones((height, width), dtype=torch.bool, device=inputs.maps.device)
    band[rows : height - rows, cols : width - cols] = False
    return _share(inputs.maps, band)


def lung_relevance(inputs: MetricInputs) -> torch.Tensor:
    """Share of the map's positive relevance inside the lung fields: where a chest finding
    can be. Below :data:`SHORTCUT_LUNG_SHARE` the map is flagged (:func:`shortcut`). NaN
    without lung fields or without positive relevance; defined without a truth."""
    if inputs.lungs is None:  # before any pass over the maps
        return torch.full(inputs.maps.shape[:1], float("nan"), device=inputs.maps.device)
    return _share(inputs.maps, inputs.lungs)


def shortcut(lung_share: float | None) -> bool | None:
    """Whether most of a map's positive relevance lies outside the lungs (None: unknown)."""
    if lung_share is None or lung_share != lung_share:  # missing or NaN
        return None
    return lung_share < SHORTCUT_LUNG_SHARE


def relevance_shares(values: torch.Tensor, lungs: torch.Tensor | None) -> dict[str, float | None]:
    """One map's shares of positive relevance inside the lungs and in the border band
    (no regions or truth needed); None where undefined."""
    maps = torch.as_tensor(values).float().unsqueeze(0)
    blank = torch.zeros(maps.shape, dtype=torch.bool, device=maps.device)
    inputs = _checked(maps, blank, blank, "nan", None, lungs)
    shares = {
        "lung_relevance": lung_relevance(inputs),
        "border_relevance": border_relevance(inputs),
    }
    return {name: (None if torch.isnan(v[0]) else float(v[0])) for name, v in shares.items()}


def shortcut_caption(values: dict[str, float | None]) -> str:
    """Where a map's positive relevance lies, in words: inside the lungs, in the border."""
    parts = []
    for name, words in (
        ("lung_relevance", "inside the lungs"),
        ("border_relevance", "in the border band"),
    ):
        value = values.get(name)
        if value is not None and value == value:
            parts.append(f"{value:.0%} {words}")
    return "Positive relevance: " + (" · ".join(parts) if parts else "none")


def _pixel(
    name: str,
    label: str,
    higher: bool,
    compute: Compute,
    unit: str = "",
    in_report: bool = False,
    compared: bool = False,
) -> Metric:
    return Metric(name, label, higher, unit, compute, in_report=in_report, compared=compared)


def _from(group: str, key: str) -> Compute:
    return lambda inputs: getattr(inputs, group)[key]


_PIXEL = (
    _pixel("iou", "IoU", True, _from("counts", "iou"), in_report=True, compared=True),
    _pixel("dice", "Dice", True, _from("counts", "dice"), in_report=True, compared=True),
    _pixel("precision", "pixel precision", True, _from("counts", "precision")),
    _pixel("recall", "pixel recall", True, _from("counts", "recall")),
    _pixel(
        "hausdorff",
        "Hausdorff distance (max)",
        False,
        _from("distances", "hausdorff"),
        "px",
        in_report=True,
    ),
    _pixel(
        "hd95",
        "Hausdorff distance, 95th percentile",
        False,
        _from("distances", "hd95"),
        "px",
        in_report=True,
        compared=True,
    ),
    _pixel(
        "mean_distance",
        "mean distance predicted -> truth (the LIME vs Grad-CAM study's 'Hausdorff')",
        False,
        _from("distances", "mean_distance"),
        "px",
        in_report=True,
        compared=True,
    ),
    _pixel(
        "hit",
        "hit (pointing game)",
        True,
        lambda x: overlap.hit(x.maps, x.truth, x.empty),
        in_report=True,
        compared=True,
    ),
    _pixel(
        "relevance_mass",
        "relevance mass accuracy",
        True,
        lambda x: overlap.relevance_mass(x.maps, x.truth, x.empty),
        in_report=True,
    ),
    _pixel(
        "relevance_rank",
        "relevance rank accuracy",
        True,
        lambda x: overlap.relevance_rank(x.maps, x.truth, x.empty),
    ),
    _pixel("border_relevance", "positive relevance in the border band", False, border_relevance),
    _pixel("lung_relevance", "positive relevance inside the lungs", True, lung_relevance),
)
_ELSEWHERE = (
    Metric("box_iou_mean", "box IoU, mean over radiologists", True, computed_in="metrics.boxes"),
    Metric("box_iou_max", "box IoU, max over radiologists", True, computed_in="metrics.boxes"),
    Metric(
        "box_iou_pairs_mean", "box IoU, mean over all box pairs", True, computed_in="metrics.boxes"
    ),
)
FAITHFULNESS_METRICS = {
    m.name: m
    for m in (
        Metric("deletion_auc", "deletion AUC", False, computed_in="metrics.faithfulness"),
        Metric("insertion_auc", "insertion AUC", True, computed_in="metrics.faithfulness"),
    )
}
# The localisation metrics: one column each in the results database.
METRICS: dict[str, Metric] = {m.name: m for m in (*_PIXEL, *_ELSEWHERE)}
PIXEL_METRICS = tuple(m.name for m in _PIXEL)
REPORTED = tuple(m.name for m in METRICS.values() if m.in_report)  # `report`'s table
COMPARED = tuple(m.name for m in METRICS.values() if m.compared)  # the Cases page's
# Pixel metrics the fused CPU kernel computes (cxrxai.metrics.cpu_kernels.pair_metrics).
ACCELERATED = (
    "iou", "dice", "precision", "recall", "hausdorff", "hd95", "mean_distance", "hit",
    "relevance_mass", "relevance_rank", "border_relevance", "lung_relevance",
)  # fmt: skip


def localisation_metrics(
    maps: torch.Tensor,
    regions: torch.Tensor,
    truth: torch.Tensor,
    empty: str = "nan",
    spacing: Spacing | None = None,
    lungs: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every pixel metric for a batch: ``maps`` (B, H, W) heatmaps, ``regions`` their
    binary regions, ``truth`` the true masks, ``lungs`` the lung fields ((H, W) or
    (B, H, W); None: unknown); each value a (B,) tensor on their device.

    Distances are in pixels, or in mm when ``spacing`` (row, column mm per pixel) is given.
    On the CPU the fused kernel computes the :data:`ACCELERATED` metrics (an order of
    magnitude faster than a per-image NumPy/SciPy loop, docs/benchmarks.md); every other metric, and
    every metric elsewhere, comes from its reference ``compute``."""
    on_cpu = torch.as_tensor(maps).device.type == "cpu"
    inputs = _checked(maps, regions, truth, empty, spacing, lungs, check_nan=not on_cpu)
    values = _accelerated(inputs) if on_cpu else {}  # the kernel checks for NaN itself
    return {
        name: values[name] if name in values else METRICS[name].compute(inputs)
        for name in PIXEL_METRICS
    }


def localisation_torch(
    maps: torch.Tensor,
    regions: torch.Tensor,
    truth: torch.Tensor,
    empty: str = "nan",
    spacing: Spacing | None = None,
    lungs: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`localisation_metrics` from the references alone, on any device."""
    inputs = _checked(maps, regions, truth, empty, spacing, lungs)
    return {name: METRICS[name].compute(inputs) for name in PIXEL_METRICS}


def _checked(
    maps: torch.Tensor,
    regions: torch.Tensor,
    truth: torch.Tensor,
    empty: str,
    spacing: Spacing | None,
    lungs: torch.Tensor | None = None,
    check_nan: bool = True,
) -> MetricInputs:
    regions, truth = overlap.check_masks(regions, truth, empty)
    maps, _ = overlap.check_maps(maps, truth, empty)
    maps, regions, truth = torch.broadcast_tensors(maps, regions, truth)
    if check_nan:
        has_nan = torch.isnan(maps).flatten(1).any(1)
        if has_nan.any():
            raise _nan_error(has_nan)
    if lungs is not None:
        lungs = torch.as_tensor(lungs, device=maps.device).bool()
        if lungs.shape[-2:] != maps.shape[-2:]:
            raise CxrxaiError(
                f"Lung fields of {tuple(lungs.shape[-2:])} pixels do not match the maps' "
                f"{tuple(maps.shape[-2:])}."
            )
        lungs = lungs.expand_as(maps)
    return MetricInputs(maps, regions, truth, empty, spacing or (1.0, 1.0), lungs)


def _accelerated(inputs: MetricInputs) -> dict[str, torch.Tensor]:
    """The :data:`ACCELERATED` metrics from the fused CPU kernel, with the empty-mask
    convention applied as the references apply it."""
    height, width = inputs.maps.shape[-2:]
    lungs = inputs.lungs
    raw = cpu_kernels.run(
        cpu_kernels.pair_metrics,
        cpu_kernels.as_numpy(inputs.maps),
        cpu_kernels.as_numpy(inputs.regions),
        cpu_kernels.as_numpy(inputs.truth),
        cpu_kernels.as_numpy(lungs) if lungs is not None else np.zeros((0, height, width), bool),
        _border(height, width),
        *inputs.spacing,
    )
    columns = {
        name: torch.from_numpy(raw[:, i].astype(np.float32))
        for i, name in enumerate(cpu_kernels.FIELDS)
    }
    has_nan = columns["map_has_nan"] > 0
    if has_nan.any():
        raise _nan_error(has_nan)
    out = overlap.scores_from_counts(
        columns["tp"], columns["n_pred"], columns["n_truth"], inputs.empty
    )
    truth_any = columns["n_truth"] > 0
    for name in ("hit", "relevance_mass", "relevance_rank"):
        out[name] = overlap.truth_score(columns[name], truth_any, inputs.empty)
    for name in ("hausdorff", "hd95", "mean_distance", "border_relevance", "lung_relevance"):
        out[name] = columns[name]
    return out


def _nan_error(which: torch.Tensor) -> CxrxaiError:
    where = [int(i) for i in torch.nonzero(which).flatten()[:5]]
    return CxrxaiError(
        f"Heatmap(s) at batch index {where} contain NaN, so no metric is defined for them: "
        "the explanation failed; recompute it (or report the method and image)."
    )


def describe(values: dict[str, float | None], unit: str = "px") -> list[dict[str, str]]:
    """Rows for a metrics panel: label, value (or "n/a" for a missing one), direction."""
    rows = []
    for name, info in METRICS.items():
        if name not in values:
            continue
        value = values[name]
        shown = "n/a" if value is None else f"{value:.3f}"
        if info.unit and value is not None:
            shown += f" {unit}"
        arrow = "↑" if info.higher_is_better else "↓"
        rows.append({"metric": info.label, "value": shown, "better": f"{arrow} {info.direction}"})
    return rows
