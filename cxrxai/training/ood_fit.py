"""Calibrate the out-of-distribution check (:mod:`cxrxai.ood`) on COVID-QU-Ex: feature
statistics from Train, thresholds from Val within a false-alarm budget
(``python -m cxrxai calibrate-ood``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from cxrxai.cases import Case
from cxrxai.errors import CxrxaiError
from cxrxai.lungs import LungSegmenter
from cxrxai.ood import LungShape, OodStats, judge, lung_shape

FALSE_ALARM_BUDGET = 0.02  # at most 2 % of Val's radiographs warned about
AREA_TAIL = 0.005  # each side of the lung-area range leaves out 0.5 % of Val
PARTS_RANGE = (1, 3)  # one or two lungs, three when a lung is split by an opacity


def features_and_shapes(
    segmenter: LungSegmenter,
    cases: Sequence[Case],
    batch: int = 32,
    log: Callable[[str], None] = print,
) -> tuple[np.ndarray, list[LungShape]]:
    """The lung model's pooled features (N, C) and lung shapes of every case's image."""
    features, shapes = [], []
    started = time.perf_counter()
    for start in range(0, len(cases), batch):
        images = [case.load_image().pixels for case in cases[start : start + batch]]
        probabilities, pooled = segmenter.analyse(images)
        features.append(pooled)
        shapes += [lung_shape(p >= segmenter.threshold) for p in probabilities]
        if start // batch % 20 == 0:
            log(f"{start + len(images)}/{len(cases)} images, {time.perf_counter() - started:.0f} s")
    return np.concatenate(features), shapes


def fit_ood(
    train_features: np.ndarray,
    val_features: np.ndarray,
    val_shapes: Sequence[LungShape],
    budget: float = FALSE_ALARM_BUDGET,
) -> OodStats:
    """Mean and Ledoit-Wolf precision from Train; the lung-area range from Val's
    :data:`AREA_TAIL` quantiles; the distance threshold the smallest that keeps Val's
    false alarms (either check) within ``budget``."""
    from sklearn.covariance import LedoitWolf

    if len(train_features) < 2 * train_features.shape[1] // 4 or len(val_features) < 50:
        raise CxrxaiError(
            f"{len(train_features)} training and {len(val_features)} validation images are "
            "too few to calibrate the check."
        )
    shrunk = LedoitWolf().fit(train_features)
    areas = np.array([s.area for s in val_shapes])
    area_range = (
        float(np.quantile(areas, AREA_TAIL)),
        float(np.quantile(areas, 1 - AREA_TAIL)),
    )
    base = OodStats(shrunk.location_, shrunk.precision_, np.inf, area_range, PARTS_RANGE)
    distances = base.distances(val_features)
    shape_alarm = np.array([judge(base, 0.0, s).flagged for s in val_shapes])
    # the smallest threshold whose union with the shape alarms stays within the budget
    allowed = int(np.floor(budget * len(distances)))
    threshold = float(distances.max())
    for candidate in np.sort(distances)[::-1]:
        if (shape_alarm | (distances > candidate)).sum() > allowed:
            break
        threshold = float(candidate)
    alarms = shape_alarm | (distances > threshold)
    return OodStats(
        base.mean,
        base.precision,
        threshold,
        area_range,
        PARTS_RANGE,
        {
            "train_images": str(len(train_features)),
            "val_images": str(len(val_features)),
            "val_false_alarms": f"{int(alarms.sum())} ({alarms.mean():.2%})",
            "val_shape_alarms": str(int(shape_alarm.sum())),
            "shrinkage": f"{shrunk.shrinkage_:.4f}",
            "date": time.strftime("%Y-%m-%d"),
        },
    )
