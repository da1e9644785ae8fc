"""CheXlocalize ground truth: polygon annotations or COCO RLE segmentations (JSON).

Two files of the release, both keyed by CheXpert image id
(``patient64541_study1_view1_frontal``):

- ``gt_annotations_{val,test}.json``: ``{id: {"img_size": [h, w], pathology:
  [[[x, y], ...], ...]}}`` -- polygons in image pixels;
- ``gt_segmentations_{val,test}.json``: ``{id: {pathology: {"size": [h, w], "counts":
  "<COCO RLE>"}}}`` -- decoded with pycocotools, the library CheXlocalize itself uses.

An empty segmentation (pathology absent) is kept: CheXlocalize scores it (IoU NaN in
true-positive-only mode), so it must reach the metrics as an empty mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrxai.cases import Annotation, Case
from cxrxai.errors import DatasetError

AUTHOR = "CheXlocalize radiologist"


def chexpert_image_path(image_root: Path, cxr_id: str) -> Path:
    """``patient64541_study1_view1_frontal`` -> ``patient64541/study1/view1_frontal.jpg``."""
    parts = cxr_id.split("_", 2)
    if len(parts) != 3:
        return image_root / f"{cxr_id}.jpg"
    patient, study, view = parts
    return image_root / patient / study / f"{view}.jpg"


def polygons_to_mask(polygons: list[list[list[float]]], size_hw: tuple[int, int]) -> np.ndarray:
    """Fill every polygon (x, y vertices in pixels) into one bool mask of ``size_hw``."""
    mask = np.zeros(size_hw, dtype=np.uint8)
    for polygon in polygons:
        points = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32)
        if points.ndim == 2 and len(points) >= 3:
            cv2.fillPoly(mask, [points.reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    from pycocotools import mask as coco_mask

    encoded = dict(rle)
    if isinstance(encoded.get("counts"), str):
        encoded["counts"] = encoded["counts"].encode("ascii")
    if isinstance(encoded.get("counts"), list):
        height, width = encoded["size"]
        encoded = coco_mask.frPyObjects(encoded, height, width)
    return coco_mask.decode(encoded).astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    from pycocotools import mask as coco_mask

    counts = rle["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))
    return int(coco_mask.area({"size": rle["size"], "counts": counts.encode("ascii")}))


def load_chexlocalize(
    json_path: Path | str, image_root: Path | str | None = None, split: str = ""
) -> list[Case]:
    """Cases from either CheXlocalize JSON file; images under ``image_root`` (CheXpert
    layout), by default the JSON's folder."""
    json_path = Path(json_path)
    root = Path(image_root) if image_root else json_path.parent
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Cannot read CheXlocalize JSON '{json_path}': {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"'{json_path}' is not a CheXlocalize file (expected an object)")
    cases = []
    for cxr_id in sorted(data):
        entry = data[cxr_id]
        annotations, labels = [], []
        size = entry.get("img_size")
        for pathology, value in entry.items():
            if pathology == "img_size":
                continue
            loader, present = _mask_loader(json_path, cxr_id, pathology, value, size)
            annotations.append(Annotation("mask", pathology, AUTHOR, mask_loader=loader))
            if present:
                labels.append(pathology)
        cases.append(
            Case(
                case_id=f"chexlocalize/{cxr_id}",
                image_path=chexpert_image_path(root, cxr_id),
                labels=sorted(labels),
                annotations=annotations,
                dataset="chexlocalize",
                split=split,
            )
        )
    return cases


def _mask_loader(
    json_path: Path, cxr_id: str, pathology: str, value: Any, size: Any
) -> tuple[Callable[[], np.ndarray], bool]:
    if isinstance(value, dict) and "counts" in value and "size" in value:
        # pycocotools computes the area from the compressed runs, without decoding.
        return (lambda: rle_to_mask(value)), rle_area(value) > 0
    if isinstance(value, list):
        if not size or len(size) != 2:
            raise DatasetError(
                f"'{json_path}': '{cxr_id}' has polygons for '{pathology}' but no "
                "'img_size': [height, width]"
            )
        height, width = int(size[0]), int(size[1])
        return (lambda: polygons_to_mask(value, (height, width))), len(value) > 0
    raise DatasetError(
        f"'{json_path}': '{cxr_id}' / '{pathology}' is neither a polygon list nor a COCO RLE"
    )
