"""NIH ChestX-ray14 bounding boxes (``BBox_List_2017.csv``).

Boxes are given in pixels of the ORIGINAL 1024x1024 images; copies on disk are often
downsampled, so every box is scaled by (actual size / original size) per axis.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from pathlib import Path

from PIL import Image

from cxrxai.cases import Annotation, Case
from cxrxai.errors import DatasetError

NIH_ORIGINAL_SIZE = (1024, 1024)  # (width, height) of every ChestX-ray14 image
NIH_AUTHOR = "NIH radiologist"
# The box subset has no official split. cxrxai's own, by patient (the image name's first
# field) so that no patient is on both sides: patient id mod 4 = 0 or 1 train, 2 val, 3 test.
NIH_SPLITS = {"train": (0, 1), "val": (2,), "test": (3,)}


def nih_split(case_id: str) -> str:
    """'train', 'val' or 'test' for a case id such as ``nih-bbox/00013118_008``."""
    patient = int(Path(case_id).name.split("_")[0])
    return next(name for name, rests in NIH_SPLITS.items() if patient % 4 in rests)


def read_bbox_rows(csv_path: Path) -> list[tuple[str, str, float, float, float, float]]:
    """(image, finding, x, y, w, h) rows; the header's split last columns are tolerated."""
    opener = gzip.open if csv_path.suffix == ".gz" else open
    rows = []
    try:
        with opener(csv_path, "rt", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or header[0].strip() != "Image Index":
                raise DatasetError(
                    f"'{csv_path}' does not start with the BBox_List_2017 header "
                    f"'Image Index,Finding Label,Bbox [x,y,w,h],,,' (got {header})"
                )
            for line_no, row in enumerate(reader, start=2):
                if not row or not row[0].strip():
                    continue
                try:
                    x, y, w, h = (float(v) for v in row[2:6])
                except (ValueError, IndexError) as exc:
                    raise DatasetError(
                        f"'{csv_path}' line {line_no}: expected image, finding, x, y, w, h; "
                        f"got {row}"
                    ) from exc
                rows.append((row[0].strip(), row[1].strip(), x, y, w, h))
    except OSError as exc:
        raise DatasetError(f"Cannot read NIH box list '{csv_path}': {exc}") from exc
    return rows


def load_nih_bbox(
    root: Path | str,
    csv_name: str = "BBox_List_2017.csv",
    images_dir: str = "images",
    only_present: bool = True,
) -> list[Case]:
    """Cases of the NIH box subset under ``root`` (``images/`` + the CSV), sorted by id.

    ``only_present``: skip rows whose image file is not on disk (the subset here holds
    348 of the 880 images); with False, such cases are listed and report the missing file
    when their image is loaded.
    """
    root = Path(root)
    csv_path = root / csv_name
    if not csv_path.is_file():
        raise DatasetError(
            f"NIH box list '{csv_path}' not found. Point --data-root / $CXRXAI_DATA at the "
            "folder holding nih-bbox/."
        )
    grouped: dict[str, list[tuple[str, float, float, float, float]]] = defaultdict(list)
    for image, finding, x, y, w, h in read_bbox_rows(csv_path):
        grouped[image].append((finding, x, y, w, h))
    cases = []
    for image_name in sorted(grouped):
        image_path = root / images_dir / image_name
        if not image_path.is_file():
            if only_present:
                continue
            scale_x = scale_y = 1.0
        else:
            with Image.open(image_path) as probe:  # header only, no decode
                width, height = probe.size
            scale_x, scale_y = width / NIH_ORIGINAL_SIZE[0], height / NIH_ORIGINAL_SIZE[1]
        annotations = [
            Annotation(
                "box",
                finding,
                NIH_AUTHOR,
                box=(x * scale_x, y * scale_y, (x + w) * scale_x, (y + h) * scale_y),
            )
            for finding, x, y, w, h in grouped[image_name]
        ]
        cases.append(
            Case(
                case_id=f"nih-bbox/{Path(image_name).stem}",
                image_path=image_path,
                labels=sorted({a.label for a in annotations}),
                annotations=annotations,
                dataset="nih-bbox",
            )
        )
    return cases
