"""A generic manifest so any dataset can be brought in: CSV or JSON.

CSV: one row per annotation (or per image without one). Columns (only ``image`` is
required): ``image, case_id, split, labels`` (separated by ``;``), ``kind``
(box | mask | point), ``label``, ``author``, ``x_min, y_min, x_max, y_max`` (box),
``x, y`` (point), ``mask`` (path to a binary mask image), ``role`` (``finding``, the
default, or ``lungs``: a mask of the lung fields, used by ``--within-lungs`` and the lung
share instead of the lung-field model's prediction; its ``label`` may be left empty).
Rows with the same image are merged into one case.

JSON: a list of cases (or ``{"cases": [...]}``), each
``{"image": ..., "case_id": ..., "split": ..., "labels": [...], "annotations":
[{"kind": "box", "label": ..., "author": ..., "box": [x_min, y_min, x_max, y_max]},
 {"kind": "mask", "label": ..., "mask": "masks/a.png"}, {"kind": "point", "point": [x, y]},
 {"kind": "mask", "role": "lungs", "mask": "lungs/a.png"}]}``.

Relative paths are resolved against the manifest's folder; coordinates are pixels of
the image file. Every path must lead inside the manifest's folder or the data root (a
manifest is a file anyone could hand over: ``../../etc``, absolute and ``~`` paths would
read any file the server can), unless ``anywhere=True`` (``--manifest-anywhere``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from cxrxai.cases import Annotation, Case
from cxrxai.errors import DatasetError

LABEL_SEPARATOR = ";"
KINDS = ("box", "mask", "point")
ROLES = ("finding", "lungs")


def load_manifest(
    path: Path | str, data_root: Path | None = None, anywhere: bool = False
) -> list[Case]:
    """Cases from a ``.csv`` or ``.json`` manifest, in file order. Image and mask paths
    must lie inside the manifest's folder or ``data_root`` unless ``anywhere``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Manifest '{path}' not found.")
    places = _Places(path, data_root, anywhere)
    if path.suffix.lower() == ".json":
        return _load_json(path, places)
    if path.suffix.lower() == ".csv":
        return _load_csv(path, places)
    raise DatasetError(f"Manifest '{path}' must end in .csv or .json")


class _Places:
    """Where a manifest's paths may lead, and the case ids they give."""

    def __init__(self, manifest: Path, data_root: Path | None, anywhere: bool) -> None:
        self.base = manifest.parent
        self.roots = [self.base.resolve()] + ([data_root.resolve()] if data_root else [])
        self.anywhere = anywhere

    def resolve(self, value: str, where: str) -> Path:
        candidate = Path(value)
        if self.anywhere:
            candidate = candidate.expanduser()
        elif value.startswith("~"):
            raise self._outside(value, where)
        path = candidate if candidate.is_absolute() else self.base / candidate
        if not self.anywhere and self._root_of(path) is None:
            raise self._outside(value, where)
        return path

    def relative(self, path: Path) -> str:
        """The path below the folder that holds it, as written (a symlink keeps its own
        name), for a case id: no '//' or '..'."""
        written = Path(os.path.normpath(path.absolute()))
        for root in (self.base.absolute(), *self.roots):
            if written.is_relative_to(root):
                return written.relative_to(root).as_posix()
        root = self._root_of(path)
        if root is None:
            return written.as_posix().lstrip("/")
        return path.resolve().relative_to(root).as_posix()

    def _root_of(self, path: Path) -> Path | None:
        resolved = path.resolve()  # symlinks and '..' followed before the check
        return next((r for r in self.roots if resolved.is_relative_to(r)), None)

    def _outside(self, value: str, where: str) -> DatasetError:
        allowed = " or ".join(f"'{r}'" for r in self.roots)
        return DatasetError(
            f"{where}: the path '{value}' leads outside the manifest's folder and the data "
            f"root ({allowed}); move the file there, or pass --manifest-anywhere if you "
            "trust this manifest."
        )


def _number(value: Any, field: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: '{field}' must be a number, got {value!r}") from exc


def _annotation(spec: dict[str, Any], places: _Places, where: str) -> Annotation:
    kind = str(spec.get("kind") or "").strip().lower()
    if kind not in KINDS:
        raise DatasetError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    role = str(spec.get("role") or "finding").strip().lower()
    if role not in ROLES:
        raise DatasetError(f"{where}: role must be one of {list(ROLES)}, got {role[:40]!r}")
    author = str(spec.get("author") or "").strip() or None
    if role == "lungs":
        mask = str(spec.get("mask") or "").strip()
        if kind != "mask" or not mask:
            raise DatasetError(f"{where}: a 'lungs' annotation is a mask: kind 'mask' and 'mask'")
        return Annotation(
            "mask", "lungs", author, role="anatomy", mask_path=places.resolve(mask, where)
        )
    label = str(spec.get("label") or "").strip()
    if not label:
        raise DatasetError(f"{where}: an annotation needs a 'label' (the finding it marks)")
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
        return Annotation("mask", label, author, mask_path=places.resolve(mask, where))
    except KeyError as exc:
        raise DatasetError(f"{where}: a {kind} annotation needs '{exc.args[0]}'") from exc
    except ValueError as exc:  # inverted box and the like, from Annotation itself
        raise DatasetError(f"{where}: {exc}") from exc


def _case(
    places: _Places, image: str, case_id: str | None, split: str, dataset: str, where: str
) -> Case:
    if not image:
        raise DatasetError(f"{where}: every case needs an 'image' path")
    image_path = places.resolve(image, where)
    stem = places.relative(image_path).rsplit(".", 1)[0]
    return Case(
        case_id=case_id or f"{dataset}/{stem}",
        image_path=image_path,
        dataset=dataset,
        split=split,
    )


def _load_json(path: Path, places: _Places) -> list[Case]:
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
            places,
            str(entry.get("image") or ""),
            entry.get("case_id"),
            str(entry.get("split") or ""),
            path.stem,
            where,
        )
        case.annotations = [
            _annotation(spec, places, f"{where} annotation {i}")
            for i, spec in enumerate(entry.get("annotations") or [])
        ]
        case.labels = _labels(entry.get("labels"), case.annotations)
        cases.append(case)
    return cases


def _labels(given: Any, annotations: list[Annotation]) -> list[str]:
    if isinstance(given, str):
        given = [s for s in given.split(LABEL_SEPARATOR)]
    # once each: a CSV manifest repeats an image's labels on each of its boxes' rows
    labels = list(dict.fromkeys(str(s).strip() for s in (given or []) if str(s).strip()))
    for annotation in annotations:
        if annotation.role == "finding" and annotation.label not in labels:
            labels.append(annotation.label)
    return labels


def _load_csv(path: Path, places: _Places) -> list[Case]:
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
                        places,
                        image,
                        (row.get("case_id") or None),
                        (row.get("split") or "").strip(),
                        path.stem,
                        where,
                    )
                    given_labels[image] = []
                given_labels[image] += (row.get("labels") or "").split(LABEL_SEPARATOR)
                if (row.get("kind") or "").strip():
                    spec: dict[str, Any] = dict(row)
                    if spec["kind"].strip().lower() == "box":
                        spec["box"] = [row.get(k) for k in ("x_min", "y_min", "x_max", "y_max")]
                    elif spec["kind"].strip().lower() == "point":
                        spec["point"] = [row.get("x"), row.get("y")]
                    by_image[image].annotations.append(_annotation(spec, places, where))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"Cannot read manifest '{path}': {exc}") from exc
    for image, case in by_image.items():
        case.labels = _labels(given_labels[image], case.annotations)
    return list(by_image.values())
