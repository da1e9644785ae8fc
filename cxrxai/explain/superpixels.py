"""Superpixels for LIME: scikit-image's quickshift, run on every core.

Why by hand: LIME segments each image with ``skimage.segmentation.quickshift`` before it
evaluates the model. scikit-image runs its two window passes (a Parzen density per pixel,
then the nearest pixel of higher density) on one core, which on a GPU machine costs more
than all of LIME's model evaluations (docs/benchmarks.md). No maintained
library offers a parallel quickshift (cuCIM has none). This module keeps scikit-image's
preprocessing, tie-breaking noise and forest flattening - it calls them - and runs the
same two passes with numba, one image row per thread, with every floating-point operation
in scikit-image's order, so the labels are identical (tested on real radiographs).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from skimage.color import rgb2lab
from skimage.filters import gaussian
from skimage.segmentation import quickshift as skimage_quickshift
from skimage.util import img_as_float

from cxrxai.parallel import run

# Below this, math.exp returns exactly 0.0 (the smallest subnormal is exp(-744.44)).
_EXP_UNDERFLOW = -746.0


def _float_type(dtype: np.dtype) -> type:
    """The float type scikit-image computes in for an input dtype: float32 for float16 and
    float32 input, float64 otherwise (its private ``_supported_float_type``; two lines,
    written here rather than imported from ``skimage._shared``)."""
    return np.float32 if np.dtype(dtype) in (np.float16, np.float32) else np.float64


@numba.njit(cache=True, inline="always")
def _squared_distance(image: np.ndarray, r: int, c: int, r2: int, c2: int) -> float:
    """Squared distance of two pixels in joint (colour, row, column) space, summed in
    scikit-image's order: colour channels first, then row, then column."""
    dist = 0.0
    for channel in range(image.shape[2]):
        t = image[r, c, channel] - image[r2, c2, channel]
        dist += t * t
    t = float(r - r2)
    dist += t * t
    t = float(c - c2)
    dist += t * t
    return dist


@numba.njit(cache=True, parallel=True)
def _densities(image: np.ndarray, noise: np.ndarray, scale: float, reach: int) -> np.ndarray:
    """Gaussian Parzen density of each pixel in joint (colour, row, column) space,
    exp(scale * squared distance) over the window of +-reach pixels, summed in row-major
    window order onto the tie-breaking noise (scikit-image's order: the sums agree bit for
    bit)."""
    height, width = image.shape[:2]
    densities = np.empty((height, width))
    for r in numba.prange(height):
        r_lo, r_hi = max(r - reach, 0), min(r + reach + 1, height)
        for c in range(width):
            c_lo, c_hi = max(c - reach, 0), min(c + reach + 1, width)
            total = noise[r, c]
            for r2 in range(r_lo, r_hi):
                for c2 in range(c_lo, c_hi):
                    dist = _squared_distance(image, r, c, r2, c2)
                    exponent = dist * scale
                    # exp() is exactly 0 below about -745.13: adding 0 changes nothing,
                    # and far-apart intensities make this the common case.
                    if exponent > _EXP_UNDERFLOW:
                        total += math.exp(exponent)
            densities[r, c] = total
    return densities


@numba.njit(cache=True, parallel=True)
def _parents(image: np.ndarray, densities: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel the nearest pixel of higher density within +-reach (the first in
    row-major order among equals; itself if none) and the distance to it (inf if none)."""
    height, width = image.shape[:2]
    parent = np.empty((height, width), np.intp)
    distance = np.empty((height, width))
    for r in numba.prange(height):
        r_lo, r_hi = max(r - reach, 0), min(r + reach + 1, height)
        for c in range(width):
            c_lo, c_hi = max(c - reach, 0), min(c + reach + 1, width)
            own = densities[r, c]
            closest = np.inf
            chosen = r * width + c
            for r2 in range(r_lo, r_hi):
                for c2 in range(c_lo, c_hi):
                    dist = _squared_distance(image, r, c, r2, c2)
                    # Branch-free: whether a neighbour is denser is a coin toss for the
                    # branch predictor, computing every distance is cheaper.
                    better = (densities[r2, c2] > own) & (dist < closest)
                    closest = dist if better else closest
                    chosen = r2 * width + c2 if better else chosen
            parent[r, c] = chosen
            distance[r, c] = math.sqrt(closest)
    return parent, distance


def quickshift(
    image: np.ndarray,
    ratio: float = 1.0,
    kernel_size: float = 5,
    max_dist: float = 10,
    sigma: float = 0,
    convert2lab: bool = True,
    rng: int = 42,
) -> np.ndarray:
    """``skimage.segmentation.quickshift`` for (H, W, 3) images, same arguments and labels.

    Images that scikit-image would segment in float32 go to scikit-image itself (its
    float32 kernel rounds differently).
    """
    image = img_as_float(np.atleast_3d(image))
    if _float_type(image.dtype) != np.float64:
        return skimage_quickshift(
            image,
            ratio=ratio,
            kernel_size=kernel_size,
            max_dist=max_dist,
            sigma=sigma,
            convert2lab=convert2lab,
            rng=rng,
        )
    if kernel_size < 1:
        raise ValueError("`kernel_size` should be >= 1.")
    if convert2lab:
        image = rgb2lab(image)
    image = gaussian(image, sigma=[sigma, sigma, 0], mode="reflect", channel_axis=-1)
    image = np.ascontiguousarray(image * ratio, dtype=np.float64)
    height, width = image.shape[:2]
    noise = np.random.default_rng(rng).normal(scale=0.00001, size=(height, width))
    scale, reach = -0.5 / (kernel_size * kernel_size), math.ceil(3 * kernel_size)
    densities = run(_densities, image, noise, float(scale), reach)
    parent, distance = run(_parents, image, densities, reach)
    # Cut links longer than max_dist, then point every pixel at the root of its tree.
    parent = parent.ravel()
    too_far = distance.ravel() > max_dist
    parent[too_far] = np.flatnonzero(too_far)
    while True:
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent = jumped
    return np.unique(parent, return_inverse=True)[1].reshape(height, width)


def warm_up() -> None:
    """Compile or load both kernels on a tiny image."""
    quickshift(np.random.default_rng(0).random((12, 12, 3)), kernel_size=1, max_dist=2)
