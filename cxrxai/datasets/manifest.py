"""A generic manifest so any dataset can be brought in: CSV or JSON.

CSV: one row per annotation (or per image without one). Columns (only ``image`` is
required): ``image, case_id, split, labels`` (separated by ``;``), ``kind``
(box | mask | point), ``label``, ``author``, ``x_min, y_min, x_max, y_max`` (box),
``x, y`` (point), ``mask`` (path to a binary mask image). Rows with the same image are
merged into one case.

JSON: a list of cases (or ``{"cases": [...]}``), each
``{"image": ..., "case_id": ..., "split": ..., "labels": [...], "annotations":
[{"kind": "box", "label": ..., "author": ..., "box": [x_min, y_min, x_max, y_max]},
 {"kind": "mask", "label": ..., "mask": "masks/a.png"}, {"kind": "point", "point": [x, y]}]}``.

Relative paths are resolved against the manifest's folder; coordinates are pixels of
the image file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cxrxai.cases import Annotation, Case
from cxrxai.errors import DatasetError

LABEL_SEPARATOR = ";"
KINDS = ("box", "mask", "point")


def load_manifest(path: Path | str) -> list[Case]:
    """Cases from a ``.csv`` or ``.json`` manifest, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Manifest '{path}' not found.")
    if path.suffix.lower() == ".json":
        return _load_json(path)
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    raise DatasetError(f"Manifest '{path}' must end in .csv or .json")


def _resolve(base: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _number(value: Any, field: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: '{field}' must be a number, got {value!r}") from exc


def _annotation(spec: dict[str, Any], base: Path, where: str) -> Annotation:
    kind = str(spec.get("kind") or "").strip().lower()
    if kind not in KINDS:
        raise DatasetError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    label = str(spec.get("label") or "").strip()
    if not label:
        raise DatasetError(f"{where}: an annotation needs a 'label' (the finding it marks)")
    author = str(spec.get("author") or "").strip() or None
    try:
        if kind == "box":
            box = tuple(_number(v, "box", where) for v in spec["box"])
            if len(box) != 4:
                raise DatasetError(f"{where}: box needs x_min, y_min, x_max, y_max")
            return Annotation("box", label, author, box=box)  # type: ignore[arg-type]
        if kind == "point":
            x, y = (_number(v, "point", where) for v in spec["point"])
            return Annotation("point", label, author, point=(x, y))
        mask = str(spec.get("mask") or "").strip()
        if not mask:
            raise DatasetError(f"{where}: a mask annotation needs 'mask' (a file path)")
        return Annotation("mask", label, author, mask_path=_resolve(base, mask))
    except KeyError as exc:
        raise DatasetError(f"{where}: a {kind} annotation needs '{exc.args[0]}'") from exc
    except ValueError as exc:  # inverted box and the like, from Annotation itself
        raise DatasetError(f"{where}: {exc}") from exc


def _case(base: Path, image: str, case_id: str | None, split: str, dataset: str) -> Case:
    if not image:
        raise DatasetError(f"'{base}': every case needs an 'image' path")
    image_path = _resolve(base, image)
    return Case(
        case_id=case_id or f"{dataset}/{Path(image).with_suffix('').as_posix()}",
        image_path=image_path,
        dataset=dataset,
        split=split,
    )


def _load_json(path: Path) -> list[Case]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Manifest '{path}' is not valid JSON: {exc}") from exc
    entries = data.get("cases") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise DatasetError(f"Manifest '{path}' must hold a list of cases or {{'cases': [...]}}")
    cases = []
    for index, entry in enumerate(entries):
        where = f"'{path}' case {index}"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where}: expected an object, got {type(entry).__name__}")
        case = _case(
            path.parent,
            str(entry.get("image") or ""),
            entry.get("case_id"),
            str(entry.get("split") or ""),
            path.stem,
        )
        case.annotations = [
            _annotation(spec, path.parent, f"{where} annotation {i}")
            for i, spec in enumerate(entry.get("annotations") or [])
        ]
        case.labels = _labels(entry.get("labels"), case.annotations)
        cases.append(case)
    return cases


def _labels(given: Any, annotations: list[Annotation]) -> list[str]:
    if isinstance(given, str):
        given = [s for s in given.split(LABEL_SEPARATOR)]
    labels = [str(s).strip() for s in (given or []) if str(s).strip()]
    for annotation in annotations:
        if annotation.label not in labels:
            labels.append(annotation.label)
    return labels


def _load_csv(path: Path) -> list[Case]:
    by_image: dict[str, Case] = {}
    given_labels: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if "image" not in (reader.fieldnames or []):
                raise DatasetError(
                    f"Manifest '{path}' needs an 'image' column; found {reader.fieldnames}"
                )
            for line_no, row in enumerate(reader, start=2):
                where = f"'{path}' line {line_no}"
                image = (row.get("image") or "").strip()
                if image not in by_image:
                    by_image[image] = _case(
                        path.parent,
                        image,
                        (row.get("case_id") or None),
                        (row.get("split") or "").strip(),
                        path.stem,
                    )
                    given_labels[image] = []
                given_labels[image] += (row.get("labels") or "").split(LABEL_SEPARATOR)
                if (row.get("kind") or "").strip():
                    spec: dict[str, Any] = dict(row)
                    if spec["kind"].strip().lower() == "box":
                        spec["box"] = [row.get(k) for k in ("x_min", "y_min", "x_max", "y_max")]
                    elif spec["kind"].strip().lower() == "point":
                        spec["point"] = [row.get("x"), row.get("y")]
                    by_image[image].annotations.append(_annotation(spec, path.parent, where))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"Cannot read manifest '{path}': {exc}") from exc
    for image, case in by_image.items():
        case.labels = _labels(given_labels[image], case.annotations)
    return list(by_image.values())
