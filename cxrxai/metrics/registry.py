"""Every localisation metric with its direction and unit, and one batched entry point."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cxrxai.metrics import overlap
from cxrxai.metrics.distances import Spacing, distances


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    higher_is_better: bool
    unit: str = ""  # "px" for distances (or "mm" when the pixel spacing is known)

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("iou", "IoU", True),
        MetricInfo("dice", "Dice", True),
        MetricInfo("precision", "pixel precision", True),
        MetricInfo("recall", "pixel recall", True),
        MetricInfo("hausdorff", "Hausdorff distance (max)", False, "px"),
        MetricInfo("hd95", "Hausdorff distance, 95th percentile", False, "px"),
        MetricInfo(
            "mean_distance",
            "mean distance predicted -> truth (the LIME vs Grad-CAM study's 'Hausdorff')",
            False,
            "px",
        ),
        MetricInfo("hit", "hit (pointing game)", True),
        MetricInfo("relevance_mass", "relevance mass accuracy", True),
        MetricInfo("relevance_rank", "relevance rank accuracy", True),
        MetricInfo("box_iou_mean", "box IoU, mean over radiologists", True),
        MetricInfo("box_iou_max", "box IoU, max over radiologists", True),
        MetricInfo("box_iou_pairs_mean", "box IoU, mean over all box pairs", True),
    )
}


def localisation_metrics(
    maps: torch.Tensor,
    regions: torch.Tensor,
    truth: torch.Tensor,
    empty: str = "nan",
    spacing: Spacing | None = None,
) -> dict[str, torch.Tensor]:
    """Every pixel metric for a batch: ``maps`` (B, H, W) heatmaps, ``regions`` their
    binary regions, ``truth`` the true masks; each value a (B,) tensor on their device.

    Distances are in pixels, or in mm when ``spacing`` (row, column mm per pixel) is given.
    """
    out = overlap.region_scores(regions, truth, empty)
    out |= {
        "hit": overlap.hit(maps, truth, empty),
        "relevance_mass": overlap.relevance_mass(maps, truth, empty),
        "relevance_rank": overlap.relevance_rank(maps, truth, empty),
    }
    out.update(distances(regions, truth, spacing or (1.0, 1.0)))
    return out


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
