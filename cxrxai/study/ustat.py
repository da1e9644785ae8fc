"""The reference MRMC analysis of a reader study: the U-statistic variance of the
reader-averaged AUC (Gallas, Acad. Radiol. 13, 2006; Gallas, Bandos, Samuelson & Wagner,
Commun. Stat. A 38, 2009; Gallas & Brown, Neural Networks 21, 2008, for designs that are
not fully crossed), with Normal, BDG (Satterthwaite over mean squares, Obuchowski 2012) and
Hillis (2014) degrees of freedom, as the FDA's iMRMC 4.0.3 computes them.

Written here because no maintained Python package does this analysis (the FDA ships it as
Java, and its R package runs that Java); tests/study/test_ustat.py compares every number with
iMRMC's own output on its example and on studies made through the study service.

Scores are ``readers x cases x 2 modalities`` with NaN where a reader did not read a case in
a modality. A reader's reads in a modality count only when they cover at least
``MIN_CASES_PER_TRUTH`` normal and as many diseased cases (iMRMC's rule: below that it drops the
reader from that modality; its own warning says "less than 2", its code keeps more than 2).
A reader's AUC is over the normal-diseased pairs it read, readers weighted by their pairs, as
iMRMC does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Unbiased (U-statistic) moments from the biased sums: Gallas 2009, Eq. 9 ff. Row k is
# moment k+1 of the eight (M1: same reader/normal/diseased ... M8: none shared).
_UNBIAS = np.array(
    [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [-1, 1, 0, 0, 0, 0, 0, 0],
        [-1, 0, 1, 0, 0, 0, 0, 0],
        [1, -1, -1, 1, 0, 0, 0, 0],
        [-1, 0, 0, 0, 1, 0, 0, 0],
        [1, -1, 0, 0, -1, 1, 0, 0],
        [1, 0, -1, 0, -1, 0, 1, 0],
        [-1, 1, 1, -1, 1, -1, -1, 1],
    ],
    dtype=float,
)
# BDG moments -> BCK components (1/N0, 1/N1, 1/N0N1, 1/NR, 1/N0NR, 1/N1NR, 1/N0N1NR).
_BDG_TO_BCK = np.array(
    [
        [0, 0, 0, 0, 0, 0, 1, -1],
        [0, 0, 0, 0, 0, 1, 0, -1],
        [0, 0, 0, 0, 1, -1, -1, 1],
        [0, 0, 0, 1, 0, 0, 0, -1],
        [0, 0, 1, -1, 0, 0, -1, 1],
        [0, 1, 0, -1, 0, -1, 0, 1],
        [1, -1, -1, 1, -1, 1, 1, -1],
    ],
    dtype=float,
)
# BDG coefficients -> BCK coefficients.
_BCK_COEFFICIENTS = np.array(
    [
        [1, 0, 1, 0, 1, 0, 1, 0],
        [1, 1, 0, 0, 1, 1, 0, 0],
        [1, 0, 0, 0, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 0, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 0],
    ],
    dtype=float,
)
ALPHA = 0.05
# A variance this small is rounding (every reader separates the truths perfectly: all the
# moments equal); iMRMC's df is then 0/0 and its batch mode stops ("n <= 0").
_ZERO_VARIANCE = 1e-12
MIN_CASES_PER_TRUTH = 3  # iMRMC uses a reader's reads in a modality from 3 normal + 3 diseased
_NORMAL_FROM_DF = 50  # iMRMC uses the Normal distribution from 50 degrees of freedom


@dataclass(frozen=True)
class Components:
    """One analysis's moments and coefficients (BDG form), from :func:`_components`."""

    moments: np.ndarray  # 8 U-statistic moments
    moments_mle: np.ndarray  # 8 biased ("ideal bootstrap") moments
    coefficients: np.ndarray  # 8 coefficients (the last has the -1 of the mean squared)
    auc: float  # reader-averaged, readers weighted by the pairs they read
    reader_aucs: np.ndarray  # per reader, [A, B]; NaN where a reader read no pair


@dataclass(frozen=True)
class Inference:
    """An estimate (a reader-averaged AUC, or a difference of two) with its U-statistic
    variance and the three tests iMRMC reports (H0: AUC = 0.5, or difference = 0)."""

    estimate: float
    variance: float
    variance_mle: float  # the biased (MLE, "ideal bootstrap") variance, for comparison only
    df_bdg: float
    df_hillis: float  # NaN unless the design is fully crossed
    p_normal: float
    ci_normal: tuple[float, float]
    p_bdg: float
    ci_bdg: tuple[float, float]
    p_hillis: float
    ci_hillis: tuple[float, float]

    @property
    def se(self) -> float:
        return math.sqrt(self.variance) if self.variance >= 0 else math.nan


@dataclass(frozen=True)
class MRMCResult:
    """Both modalities alone and their difference (A - B), with the study's size."""

    modalities: tuple[str, str]
    readers: tuple[str, ...]
    n_normal: int
    n_disease: int
    reader_aucs: dict[str, tuple[float, float]]  # NaN where a reader's reads were left out
    fully_crossed: bool  # every reader read every case in both modalities
    excluded: tuple[tuple[str, str], ...]  # (reader, modality) left out: too few cases
    a: Inference
    b: Inference
    difference: Inference


def _step(diseased: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Per reader, the success matrix (normal x diseased): 1 when the diseased case scored
    higher, 1/2 on ties, 0 otherwise."""
    difference = diseased[:, None, :] - normal[:, :, None]
    return np.where(difference > 0, 1.0, np.where(difference == 0, 0.5, 0.0))


def _sums(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The eight biased sums over readers (r), normal (i) and diseased (j) cases of
    products of ``x`` and ``y`` (readers x normal x diseased), by what the two factors
    share: 1 r, i, j; 2 r, j; 3 r, i; 4 r; 5 i, j; 6 j; 7 i; 8 nothing."""
    return np.array(
        [
            (x * y).sum(),
            (x.sum(1) * y.sum(1)).sum(),
            (x.sum(2) * y.sum(2)).sum(),
            (x.sum((1, 2)) * y.sum((1, 2))).sum(),
            (x.sum(0) * y.sum(0)).sum(),
            (x.sum((0, 1)) * y.sum((0, 1))).sum(),
            (x.sum((0, 2)) * y.sum((0, 2))).sum(),
            x.sum() * y.sum(),
        ]
    )


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Moments: numerator / denominator where the denominator counts at least one
    product (iMRMC keeps the numerator, zero, where it counts none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0.5, numerator / denominator, numerator)


def _components(scores: np.ndarray, truth: np.ndarray, first: int, second: int) -> Components:
    """Moments and coefficients of the covariance of the reader-averaged AUCs of two
    modalities (``first == second``: a modality's variance)."""
    normal, diseased = scores[:, ~truth, :], scores[:, truth, :]
    read0, read1 = ~np.isnan(normal), ~np.isnan(diseased)
    design = [read0[:, :, m, None] * read1[:, None, :, m] * 1.0 for m in (first, second)]
    success = [
        design[k] * _step(np.nan_to_num(diseased[:, :, m]), np.nan_to_num(normal[:, :, m]))
        for k, m in enumerate((first, second))
    ]
    denominator_mle, numerator_mle = _sums(*design), _sums(*success)
    denominator, numerator = _UNBIAS @ denominator_mle, _UNBIAS @ numerator_mle
    pairs = [d.sum((1, 2)) for d in design]
    coefficients = denominator / (pairs[0].sum() * pairs[1].sum())
    coefficients[7] -= 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        reader_aucs = np.stack(
            [
                np.where(p > 0, s.sum((1, 2)) / p, np.nan)
                for p, s in zip(pairs, success, strict=True)
            ],
            axis=1,
        )
        auc = float(success[0].sum() / pairs[0].sum())
    return Components(
        _ratio(numerator, denominator),
        _ratio(numerator_mle, denominator_mle),
        coefficients,
        auc,
        reader_aucs,
    )


def _java_round(value: float) -> float:
    """Math.round: halves up (Python's round goes to even)."""
    return math.floor(value + 0.5) if math.isfinite(value) else value


def _bck(bdg: np.ndarray, coefficients_ab: np.ndarray) -> np.ndarray:
    """BDG moments (rows A, B, AB) -> BCK components; the covariance's components vanish
    where the design shares nothing across modalities."""
    out = bdg @ _BDG_TO_BCK.T
    out[2][coefficients_ab == 0] = 0.0
    return out


def _df_bdg(
    variance: float, bck_mle: np.ndarray, bck_coefficients: np.ndarray, difference: bool
) -> float:
    """BDG degrees of freedom: Satterthwaite over the normal, diseased and reader mean
    squares (from the MLE components), at least the smallest of their own df and 2."""
    with np.errstate(divide="ignore"):  # a single modality's other rows are zeros
        own = {
            k: [_java_round(float(1.0 / bck_coefficients[m][k] - 1.0)) for m in (0, 1)]
            for k in (0, 1, 3)
        }
    if not difference:
        terms = [(bck_mle[0][k], own[k][0]) for k in (0, 1, 3)]
        smallest = min(own[k][0] for k in (0, 1, 3))
    else:
        terms = []
        for k in (0, 1, 3):
            if bck_coefficients[2][k] > 0:  # paired across modalities
                square = bck_mle[0][k] + bck_mle[1][k] - 2.0 * bck_mle[2][k]
                terms.append((square, min(own[k])))
            else:
                terms += [(bck_mle[0][k], own[k][0]), (bck_mle[1][k], own[k][1])]
        smallest = min(min(own[k]) for k in (0, 1, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = sum((square / df) ** 2 / df for square, df in terms)
        df = float(variance**2 / denominator) if denominator else math.inf
    if df < smallest:
        df = smallest
    return max(df, 2.0) if not math.isnan(df) else math.nan


def _hillis_ratio(n_readers: int, mean_square: float, extra: float) -> float:
    """(NR - 1) (MS + extra)^2 / MS^2, exactly NR - 1 when nothing is added: the t
    quantile takes the df truncated to an integer, so 6.9999999 for 7 would change it."""
    if mean_square == 0:  # all readers' AUCs equal: iMRMC's infinite df becomes 50
        return float(_NORMAL_FROM_DF) if extra > 0 else math.nan
    if extra == 0.0:
        return float(n_readers - 1)
    total = mean_square + extra
    return (n_readers - 1.0) * total * total / mean_square / mean_square


def _df_hillis(
    reader_aucs: np.ndarray, bdg: np.ndarray, n_normal: int, n_disease: int, difference: bool
) -> float:
    """Hillis (2014) degrees of freedom of a fully crossed study, from the readers' AUCs
    and the Obuchowski-Rockette covariances implied by the U-statistic moments."""
    n_readers = reader_aucs.shape[0]
    weights = np.array(
        [1, n_normal - 1, n_disease - 1, (n_normal - 1) * (n_disease - 1) - n_normal * n_disease]
    ) / (n_normal * n_disease)
    cov2 = [float(weights @ bdg[m][4:]) for m in range(3)]  # same case, other reader
    with np.errstate(divide="ignore", invalid="ignore"):
        if difference:
            centred = reader_aucs - reader_aucs.mean(0) - reader_aucs.mean(1, keepdims=True)
            ms_tr = float(((centred + reader_aucs.mean()) ** 2).sum() / (n_readers - 1))
            cov2_mean, cov3 = (cov2[0] + cov2[1]) / 2.0, cov2[2]
            extra = max(n_readers * (cov2_mean - cov3), 0.0)
            df = _hillis_ratio(n_readers, ms_tr, extra)
        else:
            ms_r = float(((reader_aucs[:, 0] - reader_aucs[:, 0].mean()) ** 2).sum())
            ms_r /= n_readers - 1
            df = _hillis_ratio(n_readers, ms_r, max(n_readers * cov2[0], 0.0))
    if math.isinf(df):
        return float(_NORMAL_FROM_DF)
    return max(df, 2.0) if not math.isnan(df) else math.nan


def _tests(
    estimate: float, variance: float, variance_mle: float, df_bdg: float, df_hillis: float,
    null: float,
) -> Inference:  # fmt: skip
    """p-values and 95 % CIs: Normal, and Student's t with the df truncated to an integer
    (as iMRMC does; the Normal from 50 df)."""
    if not variance > _ZERO_VARIANCE:  # iMRMC reports no df, test or CI for such a variance
        df_bdg = df_hillis = math.nan
    se = math.sqrt(variance) if variance >= 0 else math.nan
    statistic = abs(estimate - null) / se if se > 0 else math.nan

    def test(df: float) -> tuple[float, tuple[float, float]]:
        if math.isnan(df) or math.isnan(se):
            return math.nan, (math.nan, math.nan)
        law = stats.norm if df >= _NORMAL_FROM_DF else stats.t(int(df))
        cutoff = float(law.ppf(1 - ALPHA / 2))
        p = float(2 * law.sf(statistic)) if not math.isnan(statistic) else math.nan
        return p, (estimate - se * cutoff, estimate + se * cutoff)

    p_normal, ci_normal = test(math.inf if variance > _ZERO_VARIANCE else math.nan)
    p_bdg, ci_bdg = test(df_bdg)
    p_hillis, ci_hillis = test(df_hillis)
    return Inference(
        estimate, variance, variance_mle, df_bdg, df_hillis, p_normal, ci_normal, p_bdg,
        ci_bdg, p_hillis, ci_hillis,
    )  # fmt: skip


def _crossed(scores: np.ndarray, modalities: tuple[int, ...]) -> bool:
    """iMRMC's test: the readers and cases with a read in these modalities, all read."""
    read = ~np.isnan(scores[:, :, list(modalities)])
    both = read.all(axis=2)
    readers, cases = read.any(axis=(1, 2)).sum(), read.any(axis=(0, 2)).sum()
    return bool(both.sum() == readers * cases)


def too_few_cases(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """readers x modalities: True where a reader read fewer than ``MIN_CASES_PER_TRUTH``
    normal or diseased cases in that modality (and read something there)."""
    read = ~np.isnan(scores)
    normal, diseased = read[:, ~truth, :].sum(1), read[:, truth, :].sum(1)
    return (np.minimum(normal, diseased) < MIN_CASES_PER_TRUTH) & read.any(1)


def analyse(
    scores: np.ndarray,
    truth: np.ndarray,
    readers: tuple[str, ...] = (),
    modalities: tuple[str, str] = ("A", "B"),
) -> MRMCResult:
    """The U-statistic MRMC analysis of ``scores`` (readers x cases x 2, NaN: not read)
    against ``truth`` (cases; True: diseased).

    Example:
        >>> result = analyse(scores, truth, ("R01", "R02"), ("aided", "unaided"))
        >>> result.difference.estimate, result.difference.ci_bdg
    """
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=bool)
    if scores.ndim != 3 or scores.shape[2] != 2 or scores.shape[1] != truth.shape[0]:
        raise ValueError(
            f"scores must be readers x cases x 2 and truth one per case; got {scores.shape} "
            f"and {truth.shape}"
        )
    n_normal, n_disease = int((~truth).sum()), int(truth.sum())
    if n_normal == 0 or n_disease == 0 or scores.shape[0] < 2:
        raise ValueError(
            f"an MRMC analysis needs two readers and cases of both truths; got "
            f"{scores.shape[0]} readers, {n_normal} normal and {n_disease} diseased cases"
        )
    too_few = too_few_cases(scores, truth)
    scores = np.where(too_few[:, None, :], np.nan, scores)
    names = readers or tuple(f"reader {k + 1}" for k in range(scores.shape[0]))
    for m, name in enumerate(modalities):
        if (~np.isnan(scores[:, :, m])).any(1).sum() < 2:
            raise ValueError(
                f"an MRMC analysis needs two readers who each read at least "
                f"{MIN_CASES_PER_TRUTH} normal and {MIN_CASES_PER_TRUTH} diseased cases in "
                f"'{name}'; fewer did"
            )
    kept = (~np.isnan(scores)).any(axis=(1, 2))  # readers left with a read
    scores = scores[kept]
    parts = {key: _components(scores, truth, *key) for key in ((0, 0), (1, 1), (0, 1))}
    bdg = np.stack([parts[k].moments for k in parts])
    bdg_mle = np.stack([parts[k].moments_mle for k in parts])
    coefficients = np.stack([parts[k].coefficients for k in parts])
    bck_coefficients = coefficients @ _BCK_COEFFICIENTS.T
    bck_mle = _bck(bdg_mle, bck_coefficients[2])  # the df use the MLE components only
    variances = (coefficients * bdg).sum(1)
    variances_mle = (coefficients * bdg_mle).sum(1)
    aucs = parts[(0, 1)].reader_aucs
    all_aucs = np.full((len(kept), 2), np.nan)
    all_aucs[kept] = aucs
    out = []
    for m in (0, 1):
        single = np.zeros_like(bck_coefficients)
        single[0] = bck_coefficients[m]
        mle = np.zeros_like(bck_mle)
        mle[0] = bck_mle[m]
        df_bdg = _df_bdg(float(variances[m]), mle, single, difference=False)
        one = np.zeros_like(bdg)
        one[0] = bdg[m]
        counted = ~np.isnan(aucs[:, m])  # readers whose reads count in this modality
        df_hillis = (
            _df_hillis(aucs[counted][:, [m, m]], one, n_normal, n_disease, difference=False)
            if _crossed(scores, (m,))
            else math.nan
        )
        out.append(
            _tests(
                parts[(m, m)].auc,
                float(variances[m]),
                float(variances_mle[m]),
                df_bdg,
                df_hillis,
                null=0.5,
            )
        )
    variance = float(variances[0] + variances[1] - 2 * variances[2])
    variance_mle = float(variances_mle[0] + variances_mle[1] - 2 * variances_mle[2])
    df_bdg = _df_bdg(variance, bck_mle, bck_coefficients, difference=True)
    crossed = _crossed(scores, (0, 1))
    df_hillis = _df_hillis(aucs, bdg, n_normal, n_disease, difference=True) if crossed else math.nan
    difference = _tests(
        out[0].estimate - out[1].estimate, variance, variance_mle, df_bdg, df_hillis, null=0.0
    )
    return MRMCResult(
        modalities,
        tuple(names),
        n_normal,
        n_disease,
        {name: (float(a), float(b)) for name, (a, b) in zip(names, all_aucs, strict=True)},
        crossed,
        tuple((names[r], modalities[m]) for r, m in zip(*np.nonzero(too_few), strict=True)),
        out[0],
        out[1],
        difference,
    )
