"""Hostile image files, one catalogue for every door an image comes in by (a path, an
upload, a PACS): each small file declares or inflates to a huge image, and the reason
cxrxai gives when it refuses it."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of_zeros(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A valid PNG of black pixels, compressed row by row (never held in memory whole):
    a few hundred KB that declare and decode to a huge image."""
    row = b"\x00" * (1 + width * bit_depth // 8)  # filter byte + pixels
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """IHDR of a gigantic image and a token IDAT: what a bomb needs to be opened."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose SOF marker is rewritten to declare another size."""
    _, encoded = cv2.imencode(".jpg", np.zeros((16, 16), np.uint8))
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def dicom_declaring(rows: int, columns: int) -> bytes:
    """A real DICOM (pydicom's CT_small) whose header declares another size."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = rows, columns
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deflated_dicom(rows: int, columns: int) -> bytes:
    """A valid Deflated Explicit VR Little Endian DICOM of black 16-bit pixels: small on
    disk, ``rows * columns * 2`` bytes once inflated."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = bytes(rows * columns * 2)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "png 9000x9000 16-bit": (lambda: png_of_zeros(9000, 9000, 16), "9000 x 9000 pixels"),
    "png 13000x13000": (lambda: png_header_only(13000, 13000), "13000 x 13000 pixels"),
    "png 50000x50000 (Pillow's bomb)": (
        lambda: png_header_only(50000, 50000),
        "more pixels than Pillow opens",
    ),
    "png 1x100000": (lambda: png_header_only(1, 100000), "1 x 100000 pixels"),
    "jpeg 12000x12000": (lambda: jpeg_declaring(12000, 12000), "12000 x 12000 pixels"),
    "dicom header 14000x14000": (lambda: dicom_declaring(14000, 14000), "14000 x 14000"),
    "dicom deflated 6000x6000": (lambda: deflated_dicom(6000, 6000), "inflates to more than"),
}
