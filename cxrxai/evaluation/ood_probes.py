"""Images that are not frontal chest radiographs, assembled from what installed packages
ship (nothing downloaded): the set the out-of-distribution check is measured on
(docs/lungs.md lists it).

- photos, textures, microscopy, astronomy, text and drawings of scikit-image's bundled
  ``skimage.data`` (each encoded as PNG and read the way an upload is read);
- pydicom's and pydicom-data's DICOM test files of other modalities and body parts: CT,
  MR, nuclear medicine, ultrasound, a hand radiograph (CR EXTREMITY), a face photo and
  secondary captures (one file per image, encodings of the same image left out);
- made here: a smooth gradient (the issue's 8000 x 8000 one, at the size limit's 4000 x
  4000), flat gray, noise, a checkerboard, rendered text and a chart "screenshot".
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator

import cv2
import numpy as np

from cxrxai.errors import CxrxaiError
from cxrxai.imageio import read_image

# Bundled with scikit-image (no download); chest-like ones such as 'shepp_logan_phantom'
# (a head phantom) are kept: they are not chest radiographs either.
SKIMAGE_IMAGES = (
    "astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "clock",
    "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "rocket",
    "shepp_logan_phantom", "text",
)  # fmt: skip
# One file per distinct image (the J2K / RLE / big-endian copies of an image left out).
DICOM_FILES = (
    "CT_small.dcm", "MR_small.dcm", "MR2_UNCR.dcm", "emri_small.dcm", "JPEG-LL.dcm",
    "US1_UNCR.dcm", "OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "RG3_UNCR.dcm", "OT-PAL-8-face.dcm", "SC_rgb.dcm", "mlut_18.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm", "rtdose.dcm", "color-px.dcm",
)  # fmt: skip


def _png(pixels: np.ndarray) -> bytes:
    array = np.asarray(pixels)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / ((high - low) or 1.0) * 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def _made_here() -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    side = 4000
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    yield "gradient 4000x4000", _png((ramp[None, :] * 0.5 + ramp[:, None] * 0.5).astype(np.uint8))
    yield "flat gray", _png(np.full((512, 512), 128, np.uint8))
    yield "noise", _png(rng.integers(0, 256, (512, 512), dtype=np.uint8))
    squares = (np.indices((512, 512)) // 64).sum(0) % 2
    yield "checkerboard", _png((squares * 255).astype(np.uint8))
    page = np.full((600, 800), 255, np.uint8)
    for row, line in enumerate(("Discharge summary", "Patient stable.", "Follow up in 2 weeks.")):
        cv2.putText(page, line, (40, 120 + 90 * row), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 0, 3)
    yield "rendered text", _png(page)
    yield "chart screenshot", _chart_png()


def _chart_png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    axes.plot(np.arange(50), np.cumsum(np.random.default_rng(1).normal(size=50)))
    axes.set_title("Validation loss")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def non_radiographs() -> list[tuple[str, np.ndarray]]:
    """(name, pixels HxW float in [0, 1]) of every image of the set that cxrxai's readers
    accept (a file they refuse never reaches the model, so it is not part of the set)."""
    import skimage.data
    from pydicom.data import get_testdata_file

    found: list[tuple[str, np.ndarray]] = []
    for name in SKIMAGE_IMAGES:
        image = read_image(_png(getattr(skimage.data, name)()), name=f"{name}.png")
        found.append((f"skimage {name}", image.pixels))
    for name in DICOM_FILES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = get_testdata_file(name)
        if path is None:
            continue
        try:
            found.append((f"DICOM {name}", read_image(path).pixels))
        except CxrxaiError:
            continue
    for name, data in _made_here():
        found.append((name, read_image(data, name=f"{name}.png").pixels))
    return found
