"""Fused per-image CPU kernels for the localisation metrics (numba, parallel over images).

Why by hand: on a few CPU cores the batched torch formulation is memory-bound (each metric
is a pass over B x H x W values) and OpenCV / SciPy distance transforms compute the full
transform of both masks, although the distances are only read at the other mask's
pixels. No maintained library fuses these per image, so this module does, exactly:

- :func:`kth_largest` / :func:`top_k_regions`: the k-th largest value of each map from a
  strided sample that brackets it, one counting pass and a selection among the few values
  inside the bracket (the counts prove the bracket; otherwise a radix selection on the
  float bit patterns decides);
- :func:`pair_metrics`: per image one vectorised pass over the masks and the map
  (confusion counts, bounding box, extremes, NaN, positive relevance in all, in the
  truth, in the lungs, off the border band), the pointing game and
  relevance rank while the image is in cache, and the distances by an exact separable
  Euclidean distance transform - vertical distances per column, then Felzenszwalb &
  Huttenlocher's lower envelope of parabolas per row (Theory of Computing 8, 2012) - run
  only inside the bounding box of both masks (no nearer feature can lie outside it) and
  only in rows that hold a query pixel;
- :func:`mask_distances`: the distances alone.

The batched torch code in :mod:`cxrxai.metrics.overlap` and :mod:`cxrxai.metrics.distances`
stays the definition (and the GPU path); tests check that both agree, and agree with
SciPy. numba comes with ``shap``; compiled code is cached next to this file after the
first call (about 15 s on 2 cores).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from cxrxai.parallel import run

# Columns of the array returned by pair_metrics.
FIELDS = (
    "tp",
    "n_pred",
    "n_truth",
    "hit",
    "relevance_mass",
    "relevance_rank",
    "hausdorff",
    "hd95",
    "mean_distance",
    "map_has_nan",
    "border_relevance",
    "lung_relevance",
)

# reassociation only (no "no NaN / no inf" assumptions): lets LLVM vectorise the sums
_SUMS = {"reassoc", "contract"}
_BINS = 1 << 16


@numba.njit(cache=True, inline="always")
def _bin(bits: np.uint32) -> np.uint32:
    """The top 16 bits of an order-preserving unsigned key of a float32 bit pattern
    (negative values flipped; NaN above +inf, as torch.topk orders it)."""
    if bits & np.uint32(0x80000000):
        return (~bits) >> 16
    return (bits | np.uint32(0x80000000)) >> 16


@numba.njit(cache=True)
def _kth_by_histogram(values: np.ndarray, k: int) -> np.float32:
    """The k-th largest of a float32 row (1 <= k <= len) by radix selection, exact for any
    values (ties, NaN): a histogram of the top 16 bits of each value's order-preserving
    key (:func:`_bin`; a higher bin holds only larger values), then a selection among the
    few values that share the bin of the k-th largest."""
    bits = values.view(np.uint32)
    counts = np.zeros(_BINS, np.int32)
    for i in range(bits.size):
        counts[_bin(bits[i])] += 1
    above = 0
    chosen = _BINS - 1
    while above + counts[chosen] < k:
        above += counts[chosen]
        chosen -= 1
    candidates = np.empty(counts[chosen], np.float32)
    m = 0
    for i in range(bits.size):
        if _bin(bits[i]) == chosen:
            candidates[m] = values[i]
            m += 1
    rank = k - above  # rank-th largest among the candidates
    return np.partition(candidates, m - rank)[m - rank]


@numba.njit(cache=True)
def _kth_largest_row(values: np.ndarray, k: int) -> np.float32:
    """The k-th largest of a float32 row (1 <= k <= len).

    A strided sample of about 4,096 values brackets the k-th largest with a margin of
    four standard deviations of its sample rank; one pass then counts the values above
    the bracket and gathers the few inside it, and a selection among those gives the
    answer. The counts prove the bracket held it (exact either way); when it did not
    (rare: ties, outliers), the radix selection over every value decides."""
    n = values.size
    step = n // 4096
    if step < 4:
        return _kth_by_histogram(values, k)
    sample = values[::step]
    low, high = sample.min(), sample.max()
    if not (high > low and np.isfinite(low) and np.isfinite(high)):
        return _kth_by_histogram(values, k)
    bins = 1024
    scale = (bins - 1) / (np.float64(high) - low)
    counts = np.zeros(bins, np.int32)
    for value in sample:
        counts[int((value - low) * scale)] += 1
    share = k / n
    wanted = share * sample.size
    margin = 4.0 * np.sqrt(sample.size * share * (1.0 - share)) + 4.0
    upper, lower = np.inf, -np.inf
    seen = 0
    for b in range(bins - 1, -1, -1):
        if seen < wanted - margin <= seen + counts[b]:
            upper = low + (b + 1) / scale  # fewer than wanted - margin samples above
        seen += counts[b]
        if seen >= wanted + margin:
            lower = low + b / scale
            break
    above = 0
    for i in range(n):  # vectorised count
        above += values[i] > upper
    candidates = np.empty(n, np.float32)
    m = 0
    for i in range(n):  # a branch that is rarely taken, so well predicted
        if lower <= values[i] <= upper:
            candidates[m] = values[i]
            m += 1
    if above < k <= above + m:
        rank = k - above  # rank-th largest among the candidates
        return np.partition(candidates[:m], m - rank)[m - rank]
    return _kth_by_histogram(values, k)


@numba.njit(cache=True, parallel=True)
def top_k_regions(maps: np.ndarray, k: int) -> np.ndarray:
    """Per (H, W) map of a (B, H, W) float32 batch, the pixels at or above its k-th
    largest value (k clamped to [1, H W]), written while the map is in cache."""
    regions = np.empty(maps.shape, np.bool_)
    for b in numba.prange(maps.shape[0]):
        flat = maps[b].ravel()
        threshold = _kth_largest_row(flat, min(max(k, 1), flat.size))
        region = regions[b].ravel()
        for i in range(flat.size):
            region[i] = flat[i] >= threshold
    return regions


@numba.njit(cache=True, parallel=True)
def kth_largest(flat: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row of a (B, N) float32 array, its k-th largest value (k clamped to [1, N])."""
    out = np.empty(flat.shape[0], np.float32)
    for b in numba.prange(flat.shape[0]):
        out[b] = _kth_largest_row(flat[b], min(max(k[b], 1), flat.shape[1]))
    return out


@numba.njit(cache=True)
def _distances_at(
    feature: np.ndarray,
    query: np.ndarray,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    row_mm: float,
    col_mm: float,
    out: np.ndarray,
) -> int:
    """Squared distances from each ``query`` pixel of the box [r0, r1) x [c0, c1) that is
    not a feature to the nearest ``feature`` pixel (all of which lie in the box), written
    to ``out``; returns how many were written. Exact: FH's lower envelope of parabolas."""
    h, w = r1 - r0, c1 - c0
    none = np.int32(1 << 30)
    # Pass 1, row-major with a running state per column (so it vectorises): vertical
    # distance to the nearest feature in the same column, `none` when there is none.
    g = np.empty((h, w), np.int32)
    last = np.full(w, -none, np.int32)
    # (row views and selects instead of branches: LLVM vectorises these loops, 4x faster)
    for r in range(h):
        features, distance = feature[r0 + r, c0:c1].view(np.uint8), g[r]
        for c in range(w):
            last[c] = max(last[c], r if features[c] != 0 else -none)
            distance[c] = r - last[c]
    last[:] = none + h
    for r in range(h - 1, -1, -1):
        features, distance = feature[r0 + r, c0:c1].view(np.uint8), g[r]
        for c in range(w):
            last[c] = min(last[c], r if features[c] != 0 else none + h)
            distance[c] = min(distance[c], last[c] - r)
    # Pass 2, per row that holds a query pixel: the lower envelope of the parabolas
    # f(q) + (col_mm (x - q))^2 with f(q) = (row_mm g[r, q])^2, as roots v and boundaries
    # z = zn / zd, then read at the row's query pixels left to right. Boundaries stay
    # fractions (compared by cross-multiplication): a division per parabola cost more than
    # the rest of the pass. Exact for integer squared distances.
    cm2 = col_mm * col_mm
    v = np.empty(w, np.int32)
    f = np.empty(w, np.float64)
    base = np.empty(w, np.float64)
    zn = np.empty(w + 1, np.float64)
    zd = np.empty(w + 1, np.float64)
    n = 0
    for r in range(h):
        queries = query[r0 + r, c0:c1].view(np.uint8)
        features = feature[r0 + r, c0:c1].view(np.uint8)
        wanted = False
        for c in range(w):
            if queries[c] != 0 and features[c] == 0:
                wanted = True
                break
        if not wanted:
            continue
        distance = g[r]
        for q in range(w):  # vectorised: each parabola's value and height at column 0
            f[q] = np.inf if distance[q] >= none else (distance[q] * row_mm) ** 2
            base[q] = f[q] + cm2 * q * q
        k = -1
        for q in range(w):
            if f[q] == np.inf:
                continue
            while k >= 0:
                p = v[k]
                num = base[q] - base[p]
                den = 2.0 * cm2 * (q - p)
                # pop while the new parabola starts before the segment of v[k] (z[0] = -inf)
                if k > 0 and num * zd[k] <= zn[k] * den:
                    k -= 1
                    continue
                break
            k += 1
            v[k] = q
            if k > 0:
                zn[k], zd[k] = num, den
        j = 0
        for c in range(w):
            if queries[c] != 0 and features[c] == 0:
                while j < k and zn[j + 1] < c * zd[j + 1]:
                    j += 1
                p = v[j]
                out[n] = f[p] + cm2 * (c - p) * (c - p)
                n += 1
    return n


@numba.njit(cache=True)
def _percentile_with_zeros(squared: np.ndarray, n_zero: int, q: float) -> float:
    """``numpy.percentile(values, 100 q)`` (linear) where values are ``n_zero`` zeros and
    the square roots of ``squared``: two order statistics from one partition."""
    position = q * (squared.size + n_zero - 1)
    low = int(position)
    high = min(low + 1, squared.size + n_zero - 1)
    if high < n_zero:
        return 0.0
    if low < n_zero:  # low is a zero, high the smallest distance
        return (position - low) * np.sqrt(squared.min())
    part = np.partition(squared, low - n_zero)
    a = np.sqrt(part[low - n_zero])
    b = np.sqrt(part[low - n_zero + 1 :].min()) if high != low else a
    return a + (position - low) * (b - a)


@numba.njit(cache=True, fastmath=_SUMS)
def _max_and_root_sum(squared: np.ndarray) -> tuple[float, float]:
    """sqrt(max) and the sum of square roots of non-negative float64 values, vectorised
    (the max on the bit patterns, which order non-negative floats like integers)."""
    bits = squared.view(np.int64)
    top = np.int64(0)
    total = 0.0
    for i in range(squared.size):
        top = max(top, bits[i])
        total += np.sqrt(squared[i])
    return np.sqrt(np.array([top]).view(np.float64)[0]), total


@numba.njit(cache=True)
def _directed(
    feature: np.ndarray,
    query: np.ndarray,
    box: tuple[int, int, int, int],
    n_query: int,
    n_both: int,
    row_mm: float,
    col_mm: float,
    scratch: np.ndarray,
) -> tuple[float, float, float]:
    """max, 95th percentile and mean over ``query`` pixels of the distance to ``feature``."""
    m = _distances_at(feature, query, box[0], box[1], box[2], box[3], row_mm, col_mm, scratch)
    squared = scratch[:m]
    largest, total = _max_and_root_sum(squared)
    p95 = _percentile_with_zeros(squared, n_both, 0.95)  # partitions a copy
    return largest, p95, total / n_query


@numba.njit(cache=True, inline="always")
def _ordered(bits: np.int32) -> np.int32:
    """float32 bits (as int32) <-> an int32 with the same order (its own inverse). numba
    does not vectorise float max reductions; integer ones it does (6x faster)."""
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


@numba.njit(cache=True, inline="always")
def _span(flags: np.ndarray) -> tuple[int, int]:
    """[first, last + 1) of the non-zero entries ((len, 0) when there is none)."""
    first, end = flags.size, 0
    for i in range(flags.size):
        if flags[i]:
            first, end = min(first, i), i + 1
    return first, end


@numba.njit(cache=True)
def _mask_pass(pred: np.ndarray, true: np.ndarray) -> tuple:
    """(TP, |pred|, |truth|) and the bounding box (r0, r1, c0, c1) of both masks (for the
    distances alone; :func:`_image_pass` does the same inside its one pass over map and
    masks, which is why the loop is written twice)."""
    height, width = pred.shape
    tp = n_pred = n_truth = 0
    r0, r1 = height, 0
    columns = np.zeros(width, np.uint8)
    for r in range(height):
        predicted, true_row = pred[r].view(np.uint8), true[r].view(np.uint8)
        row_tp = row_pred = row_truth = 0
        for c in range(width):  # vectorised
            p, t = np.uint8(predicted[c] != 0), np.uint8(true_row[c] != 0)  # 0 / 255 bytes too
            row_tp += p & t
            row_pred += p
            row_truth += t
            columns[c] |= p | t
        tp += row_tp
        n_pred += row_pred
        n_truth += row_truth
        if row_pred + row_truth > 0:
            r0, r1 = min(r0, r), r + 1
    c0, c1 = _span(columns)
    return tp, n_pred, n_truth, (r0, r1, c0, c1)


@numba.njit(cache=True, fastmath=_SUMS)
def _image_pass(
    heat: np.ndarray, pred: np.ndarray, true: np.ndarray, lungs: np.ndarray, rows: int, cols: int
) -> tuple:
    """One vectorised pass over an image's map and masks: :func:`_mask_pass`'s counts and
    bounding box, then the map's maximum and minimum, whether it holds NaN, and its
    positive relevance in all, inside the truth, inside ``lungs`` and inside the frame that
    leaves out a border band of ``rows`` x ``cols`` pixels."""
    height, width = heat.shape
    best = np.int32(-(2**31))
    worst = np.int32(2**31 - 1)
    nan = np.int32(0)
    positive = inside = in_lungs = inner = 0.0
    tp = n_pred = n_truth = 0
    r0, r1 = height, 0
    columns = np.zeros(width, np.uint8)
    for r in range(height):
        values, bits = heat[r], heat[r].view(np.int32)
        predicted, true_row = pred[r].view(np.uint8), true[r].view(np.uint8)
        lung_row = lungs[r].view(np.uint8)
        row_tp = row_pred = row_truth = 0
        for c in range(width):
            p, t = np.uint8(predicted[c] != 0), np.uint8(true_row[c] != 0)  # 0 / 255 bytes too
            row_tp += p & t
            row_pred += p
            row_truth += t
            columns[c] |= p | t
            key = _ordered(bits[c])
            best = max(best, key)
            worst = min(worst, key)
            nan |= (bits[c] & np.int32(0x7FFFFFFF)) > np.int32(0x7F800000)
            kept = values[c] * (values[c] > 0)
            positive += kept
            inside += kept * t
            in_lungs += kept * (lung_row[c] != 0)
        if rows <= r < height - rows:
            for c in range(cols, width - cols):  # the row again, while in cache
                inner += values[c] * (values[c] > 0)
        tp += row_tp
        n_pred += row_pred
        n_truth += row_truth
        if row_pred + row_truth > 0:
            r0, r1 = min(r0, r), r + 1
    c0, c1 = _span(columns)
    extremes = np.array([_ordered(best), _ordered(worst)], np.int32).view(np.float32)
    counts = (tp, n_pred, n_truth, (r0, r1, c0, c1))
    return counts, extremes[0], extremes[1], nan != 0, positive, inside, in_lungs, inner


@numba.njit(cache=True)
def _first_max_inside(heat: np.ndarray, true: np.ndarray, maximum: float) -> bool:
    """Whether the first pixel (row-major, as ``np.argmax``) equal to ``maximum`` is true."""
    for r in range(heat.shape[0]):
        values = heat[r]
        found = False
        for c in range(values.size):  # vectorised: is the maximum in this row?
            found |= values[c] == maximum
        if found:
            for c in range(values.size):
                if values[c] == maximum:
                    return true[r].view(np.uint8)[c] != 0
    return False


@numba.njit(cache=True)
def _count_at_least(heat: np.ndarray, true: np.ndarray, threshold: float) -> tuple[int, int]:
    """How many pixels are >= threshold, and how many of them are true."""
    above = above_true = 0
    for r in range(heat.shape[0]):
        values, true_row = heat[r], true[r].view(np.uint8)
        for c in range(heat.shape[1]):
            a = np.uint8(values[c] >= threshold)
            above += a
            above_true += a & np.uint8(true_row[c] != 0)
    return above, above_true


@numba.njit(cache=True)
def _pair_distances(
    pred: np.ndarray,
    true: np.ndarray,
    counts: tuple,
    row_mm: float,
    col_mm: float,
) -> tuple[float, float, float]:
    """Hausdorff, HD95 and mean distance pred -> truth for two non-empty masks, given
    their :func:`_mask_pass`."""
    tp, n_pred, n_truth, box = counts
    scratch = np.empty(max(n_pred, n_truth), np.float64)
    max_pt, p95_pt, mean_pt = _directed(true, pred, box, n_pred, tp, row_mm, col_mm, scratch)
    max_tp, p95_tp, _ = _directed(pred, true, box, n_truth, tp, row_mm, col_mm, scratch)
    return max(max_pt, max_tp), max(p95_pt, p95_tp), mean_pt


@numba.njit(cache=True, parallel=True)
def mask_distances(
    regions: np.ndarray, truth: np.ndarray, row_mm: float, col_mm: float
) -> np.ndarray:
    """(B, 3): Hausdorff, HD95 and mean distance pred -> truth per pair of bool (B, H, W)
    masks; NaN unless both masks are non-empty."""
    out = np.full((regions.shape[0], 3), np.nan)
    for b in numba.prange(regions.shape[0]):
        counts = _mask_pass(regions[b], truth[b])
        if counts[1] > 0 and counts[2] > 0:
            out[b, 0], out[b, 1], out[b, 2] = _pair_distances(
                regions[b], truth[b], counts, row_mm, col_mm
            )
    return out


@numba.njit(cache=True, parallel=True)
def pair_metrics(
    maps: np.ndarray,
    regions: np.ndarray,
    truth: np.ndarray,
    lungs: np.ndarray,
    border: tuple[int, int],
    row_mm: float,
    col_mm: float,
) -> np.ndarray:
    """Raw per-image values (B, len(FIELDS)) for float32 maps and bool regions / truth
    (B, H, W), bool ``lungs`` (B, H, W; or (0, H, W) when unknown) and the border band's
    (rows, columns). Scores that are undefined for the image (empty truth, empty region, no
    positive relevance, a map holding NaN, no lungs) are NaN; the caller applies the
    empty-mask convention and reports NaN maps."""
    out = np.full((maps.shape[0], len(FIELDS)), np.nan)
    has_lungs = lungs.shape[0] > 0
    for b in numba.prange(maps.shape[0]):
        heat, pred, true = maps[b], regions[b], truth[b]
        lung = lungs[b] if has_lungs else true  # no lungs: a stand-in, its share dropped
        counts, best, lowest, nan, positive, inside, in_lungs, inner = _image_pass(
            heat, pred, true, lung, border[0], border[1]
        )
        tp, n_pred, n_truth, _ = counts
        out[b, 0], out[b, 1], out[b, 2], out[b, 9] = tp, n_pred, n_truth, nan
        if nan:
            continue
        if positive > 0:
            out[b, 10] = (positive - inner) / positive
            if has_lungs:
                out[b, 11] = in_lungs / positive
        if n_truth == 0:
            continue
        # pointing game: the first maximum pixel (np.argmax); a constant map is a miss
        out[b, 3] = 1.0 if best != lowest and _first_max_inside(heat, true, best) else 0.0
        if positive > 0:
            out[b, 4] = inside / positive
        top, top_in = _count_at_least(heat, true, _kth_largest_row(heat.ravel(), n_truth))
        out[b, 5] = top_in / top
        if n_pred > 0:
            out[b, 6], out[b, 7], out[b, 8] = _pair_distances(pred, true, counts, row_mm, col_mm)
    return out


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A C-contiguous NumPy view of a CPU tensor (a copy for expanded or strided ones).
    Bool masks are viewed as they are: the kernels read any non-zero byte as True (a bool
    made from a Pillow "1" image holds 255 for True)."""
    return np.ascontiguousarray(tensor.detach().numpy())


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on a tiny input, so that the
    first real call does not wait for the compiler (about 15 s on 2 cores)."""
    rng = np.random.default_rng(0)
    maps = rng.random((2, 16, 16)).astype(np.float32)
    masks = maps > 0.5
    run(top_k_regions, maps, 10)
    run(kth_largest, maps.reshape(2, -1), np.array([3, 5]))
    run(pair_metrics, maps, masks, ~masks, masks, (1, 1), 1.0, 1.0)
    run(pair_metrics, maps, masks, ~masks, masks[:0], (1, 1), 1.0, 1.0)
    run(mask_distances, masks, ~masks, 1.0, 1.0)
