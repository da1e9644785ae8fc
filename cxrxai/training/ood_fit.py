"""Calibrate the out-of-distribution check (:mod:`cxrxai.ood`) on COVID-QU-Ex
(``python -m cxrxai calibrate-ood``): feature statistics from three quarters of Train, the
thresholds from the other quarter within a false-alarm budget, and the false-alarm rate
reported on Val, which neither saw - the rate a user should expect on radiographs like
these. (Thresholds chosen on the split they are reported on understate it: 1.93 % on Val
when Val chose them, 3.8 % on unseen images of the same source.)"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from cxrxai.cases import Case
from cxrxai.errors import CxrxaiError
from cxrxai.lungs import LungSegmenter
from cxrxai.ood import LungShape, OodStats, judge, lung_shape

FALSE_ALARM_BUDGET = 0.02  # at most 2 % of the calibration images warned about
AREA_TAIL = 0.005  # each side of the lung-area range leaves out 0.5 % of them
CALIBRATION_SHARE = 0.25  # of Train, set apart for the thresholds
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


def calibration_split(
    cases: Sequence[Case], share: float = CALIBRATION_SHARE
) -> tuple[list[Case], list[Case]]:
    """(fit, calibration): a fixed ``share`` of the cases, by a hash of their ids (the
    same split on every machine and run), set apart for the thresholds."""
    cut = int(share * 2**32)

    def calibrating(case: Case) -> bool:
        return int(hashlib.sha256(case.case_id.encode()).hexdigest()[:8], 16) < cut

    return [c for c in cases if not calibrating(c)], [c for c in cases if calibrating(c)]


def false_alarms(
    stats: OodStats, features: np.ndarray, shapes: Sequence[LungShape]
) -> tuple[int, tuple[float, float]]:
    """How many of these radiographs the check warns about, with the Clopper-Pearson 95 %
    interval of the rate."""
    from scipy.stats import binomtest

    warned = sum(
        judge(stats, float(d), s).flagged
        for d, s in zip(stats.distances(features), shapes, strict=True)
    )
    interval = binomtest(warned, len(shapes)).proportion_ci(0.95, method="exact")
    return warned, (float(interval.low), float(interval.high))


def fit_ood(
    fit_features: np.ndarray,
    calibration_features: np.ndarray,
    calibration_shapes: Sequence[LungShape],
    budget: float = FALSE_ALARM_BUDGET,
) -> OodStats:
    """Mean and Ledoit-Wolf precision from ``fit_features``; the lung-area range from the
    calibration images' :data:`AREA_TAIL` quantiles;
    the distance threshold the smallest that keeps their false alarms (either check)
    within ``budget``. Report the rate on images neither part holds
    (:func:`false_alarms`)."""
    from sklearn.covariance import LedoitWolf

    if len(fit_features) < 2 * fit_features.shape[1] // 4 or len(calibration_features) < 50:
        raise CxrxaiError(
            f"{len(fit_features)} images to fit and {len(calibration_features)} to calibrate "
            "on are too few for the check."
        )
    shrunk = LedoitWolf().fit(fit_features)
    areas = np.array([s.area for s in calibration_shapes])
    area_range = (
        float(np.quantile(areas, AREA_TAIL)),
        float(np.quantile(areas, 1 - AREA_TAIL)),
    )
    base = OodStats(shrunk.location_, shrunk.precision_, np.inf, area_range, PARTS_RANGE)
    distances = base.distances(calibration_features)
    shape_alarm = np.array([judge(base, 0.0, s).flagged for s in calibration_shapes])
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
            "fit_images": str(len(fit_features)),
            "calibration_images": str(len(calibration_features)),
            "calibration_false_alarms": f"{int(alarms.sum())} ({alarms.mean():.2%})",
            "calibration_shape_alarms": str(int(shape_alarm.sum())),
            "shrinkage": f"{shrunk.shrinkage_:.4f}",
            "date": time.strftime("%Y-%m-%d"),
        },
    )
