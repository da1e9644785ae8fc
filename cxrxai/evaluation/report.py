"""Reports from a results database: tables with bootstrap CIs and figures.

- per method x class: mean of every metric with its 95 % bootstrap CI (1,000 resamples of
  cases, seeded), at one region setting;
- every pair of methods on the same cases: paired differences, Wilcoxon, Holm;
- the LIME vs Grad-CAM study's table layout (mIoU, Dice, mean distance per method);
- box IoU per finding (datasets with boxes, e.g. NIH);
- where the relevance lies: the share inside the lungs and in the border band per method
  and class, and the share of maps flagged as possible shortcuts;
- IoU versus p (top-p % regions) per method and class, as plotly HTML and a PNG
  (matplotlib renders the PNG: plotly's PNG export needs a Chrome the tool cannot assume).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.compare import paired_comparisons
from cxrxai.evaluation.store import LOCALISATION, STALE_NOTE, stale_rows
from cxrxai.metrics.bootstrap import Estimate, bootstrap_mean
from cxrxai.metrics.registry import METRICS, REPORTED, SHORTCUT_LUNG_SHARE

TABLE_METRICS = REPORTED  # the registry marks them (Metric.in_report)


@dataclass
class Cell:
    method: str
    target: str
    metric: str
    estimate: Estimate


def _require_results(db: sqlite_utils.Database) -> None:
    if LOCALISATION not in db.table_names():
        raise CxrxaiError("This database holds no evaluation results; run 'evaluate' first.")


def _rows(db: sqlite_utils.Database, where: str, params: list) -> list[dict]:
    _require_results(db)
    return list(db[LOCALISATION].rows_where(where, params))


def method_class_table(
    db: sqlite_utils.Database,
    mode: str = "top-percent",
    value: float = 10.0,
    metrics: tuple[str, ...] = TABLE_METRICS,
    correct_only: bool = False,
    seed: int = 0,
) -> list[Cell]:
    """Every (method, target class, metric) estimate at one region setting."""
    where = "mode = ? and value = ?" + (" and correct = 1" if correct_only else "")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in _rows(db, where, [mode, value]):
        groups[(row["method"], row["target"])].append(row)
    cells = []
    for (method, target), rows in sorted(groups.items()):
        for metric in metrics:
            values = [np.nan if r[metric] is None else r[metric] for r in rows]
            cells.append(Cell(method, target, metric, bootstrap_mean(values, seed=seed)))
    return cells


@dataclass
class ShortcutRow:
    method: str
    target: str
    maps: int  # maps with a lung share (lung fields known, some positive relevance)
    predicted_lungs: int  # of which the lung fields were the lung-field model's
    lung_share: Estimate
    border_share: Estimate
    flagged: int  # lung share below SHORTCUT_LUNG_SHARE

    @property
    def flagged_share(self) -> float:
        return self.flagged / self.maps if self.maps else float("nan")


def shortcut_table(
    db: sqlite_utils.Database, mode: str = "top-percent", value: float = 10.0, seed: int = 0
) -> list[ShortcutRow]:
    """Per method and class: where the maps' positive relevance lies and how many maps are
    flagged (most relevance outside the lungs). The shares do not depend on the region
    setting; one setting is read so that each map counts once."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in _rows(db, "mode = ? and value = ?", [mode, value]):
        groups[(row["method"], row["target"])].append(row)
    table = []
    for (method, target), rows in sorted(groups.items()):
        shares = [r.get("lung_relevance") for r in rows]
        known = [r for r, v in zip(rows, shares, strict=True) if v is not None]
        table.append(
            ShortcutRow(
                method,
                target,
                len(known),
                sum(r.get("lung_source") == "predicted" for r in known),
                bootstrap_mean([np.nan if v is None else v for v in shares], seed=seed),
                bootstrap_mean(
                    [
                        np.nan if r.get("border_relevance") is None else r["border_relevance"]
                        for r in rows
                    ],
                    seed=seed,
                ),
                sum(r["lung_relevance"] < SHORTCUT_LUNG_SHARE for r in known),
            )
        )
    return table


def shortcut_markdown(table: list[ShortcutRow]) -> str:
    header = (
        "| method | class | maps | lungs predicted | inside the lungs (↑) | border band (↓) "
        "| flagged |\n|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for row in table:
        flagged = "n/a" if not row.maps else f"{row.flagged_share:.0%} ({row.flagged})"
        lines.append(
            f"| {row.method} | {row.target} | {row.maps} | {row.predicted_lungs} | "
            f"{_format(row.lung_share, 2)} | {_format(row.border_share, 2)} | {flagged} |"
        )
    return "\n".join(lines)


def _format(estimate: Estimate, digits: int = 3) -> str:
    if estimate.n == 0:
        return "n/a"
    return f"{estimate.mean:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def markdown_table(cells: list[Cell]) -> str:
    """Rows method x class, columns metrics: 'mean [low, high]'. ``n`` counts the first
    metric's values that are not missing (a negative case has no IoU but a pointing-game
    hit); a cell whose own count differs says it, e.g. '0.412 [0.38, 0.44] (n=34)'."""
    metrics = list(dict.fromkeys(c.metric for c in cells))
    by_row: dict[tuple[str, str], dict[str, Estimate]] = defaultdict(dict)
    for c in cells:
        by_row[(c.method, c.target)][c.metric] = c.estimate
    header = ["method", "class", "n"] + [
        f"{METRICS[m].label.split(' (')[0]} ({'↑' if METRICS[m].higher_is_better else '↓'})"
        for m in metrics
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, target), estimates in by_row.items():
        n = estimates[metrics[0]].n
        cells = [
            _format(estimates[m]) + (f" (n={estimates[m].n})" if estimates[m].n != n else "")
            for m in metrics
        ]
        lines.append("| " + " | ".join([method, target, str(n), *cells]) + " |")
    return "\n".join(lines)


def _p(p_value: float) -> str:
    return "n/a" if np.isnan(p_value) else f"{p_value:.3g}"


def paired_markdown(
    db: sqlite_utils.Database, mode: str = "top-percent", value: float = 10.0, metric: str = "iou"
) -> str:
    """Every pair of methods per class on the same cases (:mod:`cxrxai.evaluation.compare`),
    as a markdown table; empty when fewer than two methods were scored."""
    comparisons = paired_comparisons(_rows(db, "mode = ? and value = ?", [mode, value]), metric)
    if not comparisons:
        return ""
    lines = [
        f"| class | methods | n | mean difference ({METRICS[metric].label}) | Wilcoxon p "
        "| Holm p | better |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.target} | {c.first} - {c.second} | {c.difference.n} | {_format(c.difference)} "
            f"| {_p(c.p_value)} | {_p(c.p_holm)} | {c.better or 'no difference shown'} |"
        )
    return "\n".join(lines)


def iou_versus_p(
    db: sqlite_utils.Database, metric: str = "iou", seed: int = 0
) -> dict[tuple[str, str], list[tuple[float, Estimate]]]:
    """(method, class) -> [(p, estimate)] over the top-p % region settings; a (method,
    class) with no value at any p (e.g. IoU of negative controls, whose truth is empty) is
    left out, so figure legends list only series with data."""
    if metric not in METRICS:
        raise CxrxaiError(f"Unknown metric '{metric}'; choose one of {list(METRICS)}")
    _require_results(db)
    groups: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    # four columns as tuples, not whole rows as dicts: a whole split's top-p rows are
    # millions (docs/benchmarks.md)
    selected = f'select method, target, value, "{metric}" from {LOCALISATION} where mode = ?'
    for method, target, p, value in db.execute(selected, ["top-percent"]):
        groups[(method, target, p)].append(np.nan if value is None else value)
    curves: dict[tuple[str, str], list[tuple[float, Estimate]]] = defaultdict(list)
    for (method, target, p), values in sorted(groups.items()):
        curves[(method, target)].append((p, bootstrap_mean(values, seed=seed)))
    return {key: points for key, points in curves.items() if any(e.n for _, e in points)}


def box_iou_by_finding(
    db: sqlite_utils.Database, mode: str = "top-percent", value: float = 5.0, seed: int = 0
) -> list[Cell]:
    """Box IoU (mean over radiologists) per method and finding, where boxes exist."""
    return [
        c
        for c in method_class_table(
            db, mode, value, ("box_iou_mean", "box_iou_max", "box_iou_pairs_mean"), seed=seed
        )
        if c.estimate.n > 0
    ]


def iou_curve_figure(
    curves: dict[tuple[str, str], list[tuple[float, Estimate]]], metric: str = "iou"
):
    """Plotly figure of a metric versus p, one line per (method, class), 95 % CI bars."""
    import plotly.graph_objects as go

    label = METRICS[metric].label
    figure = go.Figure()
    for (method, target), points in curves.items():
        figure.add_trace(
            go.Scatter(
                x=[p for p, _ in points],
                y=[e.mean for _, e in points],
                mode="lines+markers",
                name=f"{method} · {target}",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [e.high - e.mean for _, e in points],
                    "arrayminus": [e.mean - e.low for _, e in points],
                },
            )
        )
    figure.update_layout(
        xaxis_title="top p % of the heatmap",
        yaxis_title=f"mean {label} (95 % CI)",
        template="plotly_white",
    )
    return figure


def save_iou_curves(
    curves: dict[tuple[str, str], list[tuple[float, Estimate]]], out_stem: Path, metric: str = "iou"
) -> list[Path]:
    """The figure as interactive HTML (plotly) and PNG (matplotlib, same data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_stem.parent.mkdir(parents=True, exist_ok=True)
    fig, axis = plt.subplots(figsize=(7, 4.5), dpi=120)
    for (method, target), points in curves.items():
        means = [e.mean for _, e in points]
        errors = [[e.mean - e.low for _, e in points], [e.high - e.mean for _, e in points]]
        axis.errorbar(
            [p for p, _ in points],
            means,
            yerr=errors,
            marker="o",
            capsize=3,
            label=f"{method} · {target}",
        )
    axis.set_xlabel("top p % of the heatmap")
    axis.set_ylabel(f"mean {METRICS[metric].label} (95 % CI)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    html, png = out_stem.with_suffix(".html"), out_stem.with_suffix(".png")
    iou_curve_figure(curves, metric).write_html(html, include_plotlyjs="cdn")
    fig.savefig(png)
    plt.close(fig)
    return [html, png]


STUDY1_REGIONS = {"lime": ("top-superpixels", 5.0), "kernel-shap": ("top-superpixels", 5.0)}


def study1_table(
    db: sqlite_utils.Database,
    target: str = "COVID-19",
    default_region: tuple[str, float] = ("otsu", 0.0),
    seed: int = 0,
) -> str:
    """The LIME vs Grad-CAM study's layout: rows mIoU, Dice, mean distance; one column per
    method. LIME's region is its top-5 positive superpixels (the study's infection masks),
    every other method's is ``default_region``."""
    methods = [m for (m,) in db.execute(f"select distinct method from {LOCALISATION}")]
    columns = []
    for method in sorted(methods):
        mode, value = STUDY1_REGIONS.get(method, default_region)
        rows = _rows(
            db,
            "method = ? and target = ? and mode = ? and value = ?",
            [method, target, mode, value],
        )
        if rows:
            columns.append((f"{method} ({mode} {value:g})", rows))
    lines = [
        "| | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for metric, label in (
        ("iou", "mIoU"),
        ("dice", "Dice"),
        ("mean_distance", "mean distance, px (study: 'HD')"),
    ):
        cells = []
        for _, rows in columns:
            values = [np.nan if r[metric] is None else r[metric] for r in rows]
            cells.append(
                _format(bootstrap_mean(values, seed=seed), 3 if metric != "mean_distance" else 1)
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| cases | " + " | ".join(str(len(rows)) for _, rows in columns) + " |")
    return "\n".join(lines)


def write_report(
    db: sqlite_utils.Database, out_dir: Path, mode: str = "top-percent", value: float = 10.0
) -> Path:
    """report.md with the tables, plus the figures, into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# Localisation report\n\nRegion: {mode} {value:g}. Cells: mean [95 % bootstrap CI]."]
    stale = stale_rows(db)
    if stale:
        parts.append("**Warning:** " + STALE_NOTE.format(n=stale))
    parts.append("## Every case\n\n" + markdown_table(method_class_table(db, mode, value)))
    paired = paired_markdown(db, mode, value)
    if paired:
        parts.append(
            "## Methods compared on the same cases (IoU)\n\nMean per-case difference "
            "[paired bootstrap 95 % CI], two-sided Wilcoxon signed-rank p, Holm-adjusted "
            "over each class's pairs; 'better' only where the CI excludes 0 and Holm "
            "p < 0.05.\n\n" + paired
        )
    study1 = study1_table(db)
    if "|" in study1.splitlines()[0][2:]:
        parts.append("## The LIME vs Grad-CAM study's layout (COVID-19)\n\n" + study1)
    parts.append(
        "## Correctly classified cases only\n\n"
        + markdown_table(method_class_table(db, mode, value, correct_only=True))
    )
    shortcuts = shortcut_table(db, mode, value)
    if any(row.maps for row in shortcuts):
        parts.append(
            "## Where the relevance lies (shortcut flag)\n\nShare of each map's positive "
            "relevance inside the lung fields (the dataset's lung masks, else the lung-field "
            "model's: 'lungs predicted' counts those) and in the outer 10 % border band, mean "
            "[95 % bootstrap CI]; 'flagged': maps with less than "
            f"{SHORTCUT_LUNG_SHARE:.0%} inside the lungs.\n\n" + shortcut_markdown(shortcuts)
        )
    otsu = method_class_table(db, "otsu", 0.0)
    if any(c.estimate.n for c in otsu):
        parts.append("## Otsu threshold, contours filled (CheXlocalize)\n\n" + markdown_table(otsu))
    boxes = box_iou_by_finding(db)
    if boxes:
        parts.append("## Box IoU per finding (top 5 %)\n\n" + markdown_table(boxes))
    curves = iou_versus_p(db)
    if curves:
        save_iou_curves(curves, out_dir / "iou_vs_p")
        parts.append(
            "## IoU versus p\n\n![IoU versus p](iou_vs_p.png)\n\n[interactive](iou_vs_p.html)"
        )
    path = out_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path
