"""A study's findings in words: what ``cxrxai study analyse`` prints and the Study admin
page shows, written once. The numbers come from :mod:`cxrxai.study.analysis`,
:mod:`cxrxai.study.mrmc` and :mod:`cxrxai.study.sham`; this module only says them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from cxrxai.study import analysis
from cxrxai.study.mrmc import describe, reader_study
from cxrxai.study.sham import sham_comparison

# The staged reveal's stages: the share of reads matching the model at each
STAGES = (
    ("the image alone (own reading = the model's)", "matches_model_image_alone"),
    ("with the model's label", "agrees_with_model_label_shown"),
    ("with the explanations", "agrees_with_model_explanations_shown"),
)


@dataclass(frozen=True)
class Finding:
    """One finding: a headline ``value`` (a number, shown as a metric) or a ``text`` and
    a ``table`` of rows (shown as a section), or both."""

    title: str
    text: str = ""
    value: str | None = None
    table: list[dict[str, Any]] = field(default_factory=list)


def interval(estimate: dict[str, Any], digits: int = 2) -> str:
    """A bootstrap estimate (an Estimate's fields) as 'mean [low, high]'."""
    return (
        f"{estimate['mean']:.{digits}f} [{estimate['low']:.{digits}f}, "
        f"{estimate['high']:.{digits}f}]"
    )


def ratings_per(rows: list[dict[str, Any]]) -> list[Finding]:
    """Each score's mean [95 % CI] and median per method and per class."""
    return [
        Finding("Ratings per method", table=analysis.summary_table(rows, "method")),
        Finding("Ratings per class", table=analysis.summary_table(rows, "target")),
    ]


def findings(
    db: sqlite_utils.Database,
    study: dict[str, Any],
    rows: list[dict[str, Any]],
    unit_values: dict | None = None,
    mrmc: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every finding of a study with ratings ``rows`` (:func:`analysis.ratings`), in the
    order they are shown; ``unit_values``: an evaluation's IoU per case and method, for
    trust versus IoU; ``mrmc``: :func:`reader_study` of ``rows`` when already computed."""
    mrmc = reader_study(rows) if mrmc is None else mrmc
    out = [
        Finding(
            "Krippendorff's alpha (trust, ordinal)",
            value=f"{analysis.krippendorff_alpha(rows):.3f}",
        ),
        Finding("ICC(2,1) (trust)", value=f"{analysis.icc_2_1(rows):.3f}"),
    ]
    changes = analysis.decision_changes(rows)
    if changes["n"]:
        low, high = changes["changed_ci"]
        out.append(
            Finding(
                "Decisions changed by the explanations",
                f"agreement with the model before vs after the panels, over {changes['n']} "
                f"reads: {changes['agree_before']:.0%} -> {changes['agree_after']:.0%}; "
                f"changed {changes['changed']:.0%}, 95 % bootstrap CI [{low:.0%}, {high:.0%}] "
                f"({changes['to_agree']} to agree, {changes['to_disagree']} to disagree)",
                value=f"{changes['changed']:.0%}",
            )
        )
    if mrmc["reason"] is None:
        change = mrmc["change"]
        low, high = change["ci_bdg"]
        out.append(
            Finding(
                "Reader-averaged AUC of confidence: with - without explanations",
                f"95 % CI [{low:+.3f}, {high:+.3f}] (BDG df), p = {change['p_bdg']:.3g}"
                if low == low  # NaN: the U-statistic variance is not positive
                else "no CI: the U-statistic variance is not positive (too few readers or cases)",
                value=f"{mrmc['difference']:+.3f}",
            )
        )
    if mrmc["n_reads"]:  # the study asked for confidences
        out.append(Finding("Reader study (MRMC)", describe(mrmc), table=mrmc.get("left_out", [])))
    plausibility = analysis.informative_plausibility(rows)
    if any(entry["n wrong"] and entry["n right"] for entry in plausibility):
        out.append(
            Finding(
                "Trust when the model is right vs wrong (informative plausibility)",
                "Per method: mean ratings on the model's right and wrong decisions, and the "
                "AUC of each rating for telling them apart (0.5: it does not).",
                table=plausibility,
            )
        )
    if any(r.get("role") for r in rows):
        out.append(Finding("Ratings per reader role", table=analysis.summary_table(rows, "role")))
    if pairs := analysis.crossover_pairs(db, study["id"]):
        out.append(
            Finding("Crossover: the same case without and with explanations", _crossover(pairs))
        )
    if staged := analysis.staged_decisions(rows):
        out.append(
            Finding(
                "Decisions through the stages (staged reveal)",
                f"{staged['reads']} reads: the share whose decision matches the model's",
                table=[
                    {"stage": stage, "share agreeing with the model": interval(e), "n": e["n"]}
                    for stage, key in STAGES
                    if (e := staged[key]) is not None
                ],
            )
        )
    if shams := sham_comparison(rows):
        out.append(
            Finding(
                "Trust in real vs sham panels",
                "Sham panels show the method's map of another class. Real - sham: a bootstrap "
                "95 % CI; trust that does not drop for shams is trust in the look of a map, "
                "not in it.",
                table=shams,
            )
        )
    if marks := analysis.reader_marks(db, study["id"]):
        summary = analysis.marks_summary(rows, marks)
        reference = summary["iou_with_reference"]
        out.append(
            Finding(
                "Where readers look (their marks)",
                f"{summary['marks']} boxes; IoU with the reference annotation: "
                + (interval(reference) if reference else "no reference annotation"),
                table=[
                    {
                        "method": m,
                        "IoU of marks and the panel's top-10 % region": interval(e),
                        "n": e["n"],
                    }
                    for m, e in summary["iou_with_panel_region"].items()
                ],
            )
        )
    if unit_values is not None:
        rho = analysis.trust_vs_metric(rows, unit_values)
        out.append(
            Finding(
                "Spearman(trust, IoU of the top 10 %)",
                f"95 % bootstrap CI [{rho['low']:.3f}, {rho['high']:.3f}], n = {rho['n']} "
                "ratings with an IoU in the results database",
                value=f"{rho['rho']:.3f}",
            )
        )
    return out


def _crossover(pairs: dict[str, Any]) -> str:
    def number(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    difference = pairs["confidence_difference"]
    return (
        f"{pairs['pairs']} paired reads (washout {pairs['washout_days']} days). Confidence "
        f"without {number(pairs['confidence_without'], 1)}, with "
        f"{number(pairs['confidence_with'], 1)}"
        + (f"; paired difference {interval(difference, 1)}" if difference else "")
        + f". Agreeing with the model: without {number(pairs['agrees_without'], 2)}, with "
        f"{number(pairs['agrees_with'], 2)}."
    )


def as_lines(finding: Finding) -> list[str]:
    """A finding as lines of plain text (the CLI's)."""
    head = f"{finding.title}: {finding.value}" if finding.value is not None else finding.title
    if finding.text:
        head += f" ({finding.text})" if finding.value is not None else f": {finding.text}"
    return [head] + [
        "  " + ", ".join(f"{key} {value}" for key, value in row.items()) for row in finding.table
    ]
