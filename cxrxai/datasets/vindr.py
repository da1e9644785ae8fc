"""VinDr-CXR ``train.csv``: one box per row per radiologist (``rad_id`` kept as author).

Columns: image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max (pixels of the
original DICOM). A radiologist's "No finding" row has no box; an image that every reader
marked "No finding" is a negative case with labels ``["No finding"]``.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from pathlib import Path

from cxrxai.cases import Annotation, Case
from cxrxai.errors import DatasetError

NO_FINDING = "No finding"
REQUIRED_COLUMNS = ("image_id", "class_name", "rad_id", "x_min", "y_min", "x_max", "y_max")


def load_vindr(
    csv_path: Path | str, images_dir: Path | str | None = None, suffix: str = ".dicom"
) -> list[Case]:
    """Cases from a VinDr-CXR annotation CSV (plain or .gz), sorted by image id.

    Images are expected at ``images_dir / (image_id + suffix)``; they are not checked here
    (the public CSV is often used without the images), and a missing one is reported when
    the case's image is loaded.
    """
    csv_path = Path(csv_path)
    images = Path(images_dir) if images_dir else csv_path.parent / "train"
    opener = gzip.open if csv_path.suffix == ".gz" else open
    boxes: dict[str, list[Annotation]] = defaultdict(list)
    readers: dict[str, set[str]] = defaultdict(set)
    try:
        with opener(csv_path, "rt", newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(
                    f"'{csv_path}' lacks VinDr-CXR column(s) {missing}; found {reader.fieldnames}"
                )
            for line_no, row in enumerate(reader, start=2):
                image_id, finding, rad = row["image_id"], row["class_name"], row["rad_id"]
                readers[image_id].add(rad)
                if finding == NO_FINDING:
                    continue
                try:
                    box = tuple(float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
                except ValueError as exc:
                    raise DatasetError(
                        f"'{csv_path}' line {line_no}: finding '{finding}' without a valid box"
                    ) from exc
                boxes[image_id].append(Annotation("box", finding, rad, box=box))  # type: ignore[arg-type]
    except OSError as exc:
        raise DatasetError(f"Cannot read VinDr-CXR CSV '{csv_path}': {exc}") from exc
    cases = []
    for image_id in sorted(readers):
        annotations = boxes.get(image_id, [])
        labels = sorted({a.label for a in annotations}) or [NO_FINDING]
        cases.append(
            Case(
                case_id=f"vindr-cxr/{image_id}",
                image_path=images / f"{image_id}{suffix}",
                labels=labels,
                annotations=annotations,
                dataset="vindr-cxr",
                split="train",
            )
        )
    return cases
