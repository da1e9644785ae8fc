"""The pages' charts, built by the library."""

from __future__ import annotations

import numpy as np

from cxrxai.evaluation.figures import deletion_insertion_chart, probability_chart, sanity_chart
from cxrxai.evaluation.sanity import FAIL_SPEARMAN, SanityRow
from cxrxai.metrics.faithfulness import Curves


def test_probability_chart_orders_labels_and_marks_thresholds(small_card):
    probabilities = np.array([0.2, 0.7, 0.1])
    multiclass = probability_chart(small_card("multiclass"), probabilities)
    assert list(multiclass.data[0].y) == ["z", "x", "y"] and len(multiclass.data) == 1
    multilabel = probability_chart(small_card("multilabel", {"x": 0.3}), probabilities)
    assert list(multilabel.data[1].x) == [0.5, 0.3, 0.5]  # z, x, y thresholds


def test_curve_and_sanity_charts():
    curves = Curves([0.0, 0.5, 1.0], [0.9, 0.4, 0.1], [0.1, 0.6, 0.9])
    chart = deletion_insertion_chart(curves, "COVID-19")
    assert [trace.name for trace in chart.data] == ["deletion", "insertion"]
    assert f"{curves.deletion_auc:.3f}" in chart.layout.title.text
    assert chart.layout.yaxis.title.text == "P(COVID-19)"
    rows = [SanityRow("gradcam", f"group {s}", s + 1, 1.0 - s / 3, 0.5) for s in range(3)]
    sanity = sanity_chart(rows, ["gradcam", "lrp"])
    assert len(sanity.data) == 2 and list(sanity.data[0].y) == [1.0, 1 - 1 / 3, 1 - 2 / 3]
    assert sanity.layout.shapes[0].y0 == FAIL_SPEARMAN


def test_the_box_plot_is_plotly_express_s_without_its_dataframe():
    """The Cases page's box plot has the traces, points and layout ``px.box`` gives."""
    import plotly.express as px

    from cxrxai.evaluation.browse import Frame
    from cxrxai.evaluation.figures import box_by_class

    rng = np.random.default_rng(2)
    rows = [
        {"target": str(rng.choice(["Edema", "Atelectasis"])), "iou": float(rng.random()),
         "method": str(rng.choice(["lrp", "gradcam", "lime"]))}
        for _ in range(300)
    ]  # fmt: skip
    ours = box_by_class(Frame.from_rows(rows))
    columns = {c: [r[c] for r in rows] for c in ("target", "iou", "method")}
    theirs = px.box(columns, x="target", y="iou", color="method", points="outliers")
    assert len(ours.data) == len(theirs.data) == 3
    for mine, reference in zip(ours.data, theirs.data, strict=True):
        for key in ("name", "boxpoints", "offsetgroup", "legendgroup", "hovertemplate"):
            assert mine[key] == reference[key], key
        assert list(mine.x) == list(reference.x)
        assert np.array_equal(np.asarray(mine.y, float), np.asarray(reference.y, float))
    for key in ("boxmode", "legend", "margin"):
        assert ours.layout[key] == theirs.layout[key], key
    for axis in ("xaxis", "yaxis"):
        assert ours.layout[axis].title.text == theirs.layout[axis].title.text
