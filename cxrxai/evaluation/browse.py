"""What the researcher's Cases page shows: filtered result rows, summaries and the
qualitative picks SHAMSUL used per class (best IoU, highest probability, a multi-label
case), all read from the batch evaluation's database."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from cxrxai import environment
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.compare import comparison_table, paired_from_arrays
from cxrxai.evaluation.store import LOCALISATION
from cxrxai.metrics.registry import COMPARED, METRICS, SHORTCUT_LUNG_SHARE

# What the Cases page draws at once: a whole split's rows (hundreds of thousands) stay
# in the CSV download; the table shows the first TABLE_ROWS, the box plot a seeded sample.
TABLE_ROWS = 5_000
PLOT_POINTS = 20_000


def unit_values(
    db: sqlite_utils.Database, metric: str = "iou", mode: str = "top-percent", value: float = 10.0
) -> dict[tuple[str, str], float | None]:
    """(case_id, method) -> the metric at one region setting: what the study's analysis
    relates trust to."""
    if metric not in METRICS:
        raise CxrxaiError(f"Unknown metric '{metric}'; choose one of {list(METRICS)}")
    return {
        (row["case_id"], row["method"]): row[metric]
        for row in db[LOCALISATION].rows_where("mode = ? and value = ?", [mode, value])
    }


def results_to_browse() -> tuple[Path | None, bool]:
    """The database the Cases page opens, and whether it is the demo's: the batch
    evaluation's (:func:`cxrxai.environment.results_path`) when it exists, else the demo's (so a
    fresh install shows the page at work), else none."""
    path = environment.results_path()
    if path.is_file():
        return path, False
    demo = environment.demo_results_path()
    return (demo, True) if demo.is_file() else (None, False)


@dataclass
class Filters:
    mode: str = "top-percent"
    value: float = 10.0
    classes: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    correct: bool | None = None  # None = both
    iou_min: float = 0.0
    iou_max: float = 1.0
    include_missing_iou: bool = True
    shortcut: bool | None = None  # True: flagged maps only; False: unflagged only


def region_settings(db: sqlite_utils.Database) -> list[tuple[str, float]]:
    rows = db.execute(f"select distinct mode, value from {LOCALISATION} order by mode, value")
    return [(r[0], float(r[1])) for r in rows.fetchall()]


def distinct(db: sqlite_utils.Database, column: str) -> list[str]:
    if column not in {"method", "target", "dataset"}:
        raise ValueError(f"not a browsable column: {column}")
    rows = db.execute(f"select distinct {column} from {LOCALISATION} order by {column}")
    return [r[0] for r in rows.fetchall()]


class Frame:
    """Result rows of one region setting as a table of columns (a NumPy object array of
    the values SQLite gave, None for NULL), in case order: the Cases page filters, samples
    and picks on arrays instead of looping over hundreds of thousands of dicts."""

    def __init__(self, names: tuple[str, ...], table: np.ndarray) -> None:
        self.names = names
        self.table = table  # rows x names
        self._index = {n: i for i, n in enumerate(names)}
        self._numbers: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> Frame:
        names = tuple(rows[0]) if rows else ()
        table = np.empty((len(rows), len(names)), dtype=object)
        if rows:
            table[:] = [tuple(r.get(n) for n in names) for r in rows]
        return cls(names, table)

    def __len__(self) -> int:
        return len(self.table)

    def column(self, name: str) -> np.ndarray:
        return self.table[:, self._index[name]]

    def numbers(self, name: str) -> np.ndarray:
        """A numeric column as float64, NaN where NULL."""
        if name not in self._numbers:
            values = self.column(name).copy()
            values[values == None] = np.nan  # noqa: E711 - elementwise, not identity
            self._numbers[name] = values.astype(np.float64)
        return self._numbers[name]

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A column as text codes: (int32 per row, -1 where NULL; its distinct values as
        text, sorted), so that codes order as the values do."""
        if name not in self._codes:
            self._codes[name] = _text_codes(self.column(name))
        return self._codes[name]

    def case_keys(self) -> np.ndarray:
        """Each row's case, (checkpoint, case id), as an int64 that orders as the pair of
        texts does: what a paired comparison matches rows on."""
        checkpoints, _ = self.codes("checkpoint_sha256")
        cases, distinct = self.codes("case_id")
        return (checkpoints.astype(np.int64) + 1) * (len(distinct) + 1) + (cases + 1)

    def take(self, index: np.ndarray) -> Frame:
        """The rows at ``index`` (a boolean mask or positions), in that order."""
        taken = Frame(self.names, self.table[index])
        taken._numbers = {n: c[index] for n, c in self._numbers.items()}
        taken._codes = {n: (c[index], u) for n, (c, u) in self._codes.items()}
        return taken

    def row(self, index: int) -> dict[str, Any]:
        return dict(zip(self.names, self.table[index], strict=True))

    def to_bytes(self) -> bytes | None:
        """The frame as ``.npz`` bytes without pickle (numbers as float64 or int64 with a
        NULL mask, text as codes into its distinct values), to keep it in the database;
        None when a column mixes types (then it is not kept)."""
        arrays: dict[str, np.ndarray] = {}
        kinds = []
        for i in range(len(self.names)):
            column = self.table[:, i]
            null = column == None  # noqa: E711 - elementwise
            present = column[~null]
            types = {type(v) for v in present.tolist()}
            if types <= {str}:
                arrays[f"c{i}"], arrays[f"u{i}"] = self.codes(self.names[i])
                kinds.append("text")
            elif types <= {int} or types <= {float}:
                kind = "int" if types == {int} else "float"
                filled = column.copy()
                filled[null] = 0
                arrays[f"c{i}"] = filled.astype(np.int64 if kind == "int" else np.float64)
                arrays[f"n{i}"] = null
                kinds.append(kind)
            else:
                return None
        header = json.dumps({"names": list(self.names), "kinds": kinds, "rows": len(self)})
        buffer = io.BytesIO()
        np.savez(buffer, header=np.array(header), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Frame:
        """:meth:`to_bytes`'s frame, checked (a results file may come from anyone): a
        ValueError for anything else."""
        _check_declared_sizes(data)
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            header = json.loads(str(stored["header"]))
            names, kinds, rows = header["names"], header["kinds"], int(header["rows"])
            if not (isinstance(names, list) and len(names) == len(kinds) and rows >= 0):
                raise ValueError("not a frame")
            if any(stored[f"c{i}"].shape != (rows,) for i in range(len(names))):
                raise ValueError("a column of another length")  # before allocating rows
            table = np.empty((rows, len(names)), dtype=object)
            codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for i, kind in enumerate(kinds):
                values = stored[f"c{i}"]
                if values.shape != (rows,):
                    raise ValueError("a column of another length")
                if kind == "text":
                    text = stored[f"u{i}"]
                    uniques = text.astype(object)
                    if values.size and not (-1 <= values.min() and values.max() < len(uniques)):
                        raise ValueError("a code out of range")
                    column = np.append(uniques, None)[values]  # -1: the None appended
                    if text.dtype.kind == "U" and np.all(text[1:] > text[:-1]):
                        codes[str(names[i])] = (values.astype(np.int32), text)  # as stored
                elif kind in ("int", "float"):
                    null = stored[f"n{i}"]
                    if null.shape != (rows,) or null.dtype != bool:
                        raise ValueError("a damaged NULL mask")
                    column = values.astype(object)
                    column[null] = None
                else:
                    raise ValueError("an unknown column kind")
                table[:, i] = column
        frame = cls(tuple(str(n) for n in names), table)
        frame._codes = codes  # sorted distinct values checked: codes order as the text
        return frame

    def records(
        self, names: tuple[str, ...] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The rows as dicts (of ``names``, default every column), the first ``limit``."""
        names = names or self.names
        picked = self.table[:limit, [self._index[n] for n in names]]
        return [dict(zip(names, values, strict=True)) for values in picked.tolist()]


def _text_codes(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    null = column == None  # noqa: E711 - elementwise
    uniques, codes = np.unique(column[~null].astype(str), return_inverse=True)
    full = np.full(len(column), -1, dtype=np.int32)
    full[~null] = codes
    return full, uniques


# What the Cases page reads of each row: its table, filters, picks and comparisons.
PAGE_COLUMNS = (
    "checkpoint_sha256", "case_id", "dataset", "split", "case_labels", "mode", "value",
    "target", "method", "correct", "probability", *COMPARED, "hausdorff", "box_iou_mean",
    "lung_relevance", "border_relevance", "lung_source",
)  # fmt: skip


def _check_declared_sizes(data: bytes) -> None:
    """Each array in ``.npz`` bytes declares no more bytes than the bytes hold: NumPy
    allocates an array's declared size before reading it, so a forged entry of a few
    bytes could ask for terabytes. Written here because ``np.load`` has no such bound."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                raise ValueError("a compressed or oversized entry")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError("an unknown .npy version")
            if dtype.hasobject or int(np.prod(shape)) * dtype.itemsize > info.file_size:
                raise ValueError("an entry declaring more than it holds")


def setting_frame(
    db: sqlite_utils.Database,
    mode: str,
    value: float,
    names: tuple[str, ...] | None = PAGE_COLUMNS,
) -> Frame:
    """The rows at one region setting, in case order, read in one query as tuples (a
    whole split: 400,000 rows; SQLite's fetching them is most of the time) - what the
    page's filters then narrow without SQL. ``names``: the columns (None: all)."""
    present = set(db[LOCALISATION].columns_dict)
    chosen = "*" if names is None else ", ".join(n for n in dict.fromkeys(names) if n in present)
    cursor = db.execute(
        f"select {chosen} from {LOCALISATION} where mode = ? and value = ? order by case_id",
        [mode, value],
    )  # column names from the schema or the constant above, never from a user
    names = tuple(d[0] for d in cursor.description)
    data = cursor.fetchall()
    table = np.empty((len(data), len(names)), dtype=object)
    if data:
        table[:] = data  # one pass in C
    return Frame(names, table)


def filter_frame(frame: Frame, filters: Filters) -> Frame:
    """The rows of ``frame`` (one region setting) that ``filters`` keep, in order. As SQL
    would: a NULL matches no comparison."""
    keep = np.ones(len(frame), dtype=bool)
    for name, chosen in (("target", filters.classes), ("method", filters.methods)):
        if chosen:
            column = frame.column(name)
            keep &= np.logical_or.reduce([column == c for c in chosen])
    if filters.correct is not None:
        keep &= frame.numbers("correct") == int(filters.correct)
    if filters.shortcut is not None:
        # flagged: less than half of the positive relevance inside the lungs
        lungs = frame.numbers("lung_relevance")
        keep &= (
            (lungs < SHORTCUT_LUNG_SHARE) if filters.shortcut else (lungs >= SHORTCUT_LUNG_SHARE)
        )
    iou = frame.numbers("iou")
    within = (iou >= filters.iou_min) & (iou <= filters.iou_max)
    keep &= (within | np.isnan(iou)) if filters.include_missing_iou else within
    return frame.take(keep)


def filtered_rows(db: sqlite_utils.Database, filters: Filters) -> list[dict[str, Any]]:
    """Rows at one region setting, filtered (:func:`filter_frame`), as dicts."""
    frame = setting_frame(db, filters.mode, filters.value, names=None)
    return filter_frame(frame, filters).records()


def sample_frame(frame: Frame, limit: int, seed: int = 0) -> Frame:
    """At most ``limit`` rows of ``frame``, chosen at random (reproducibly), in order."""
    if len(frame) <= limit:
        return frame
    return frame.take(np.sort(np.random.default_rng(seed).choice(len(frame), limit, replace=False)))


def comparison_filters(filters: Filters) -> Filters:
    """The filters a paired comparison reads its rows with: the IoU range is not applied,
    since a pair needs each case of both methods."""
    return dataclasses.replace(filters, iou_min=0.0, iou_max=1.0, include_missing_iou=True)


def compared_methods(
    db: sqlite_utils.Database,
    filters: Filters,
    metric: str = "iou",
    frame: Frame | None = None,
) -> list[dict[str, Any]]:
    """The Cases page's paired comparison of methods (:mod:`cxrxai.evaluation.compare`)
    over the filtered classes, methods and correctness at the region setting
    (:func:`comparison_filters`); ``frame``: the setting's rows when the caller has them."""
    if frame is None:
        frame = setting_frame(db, filters.mode, filters.value)
    frame.case_keys()  # coded once for the setting's rows, kept by every filter's rows
    kept = filter_frame(frame, comparison_filters(filters))
    return comparison_table(
        paired_from_arrays(
            kept.column("target"),
            kept.column("method"),
            kept.case_keys(),
            kept.numbers(metric),
            metric,
        )
    )


@dataclass
class Pick:
    kind: str  # "best IoU", "highest probability", "multi-label"
    target: str
    case_id: str
    dataset: str
    split: str
    detail: str


def qualitative_picks(rows: list[dict[str, Any]] | Frame) -> list[Pick]:
    """Per class: the case with the best IoU (over methods), the most confident correct
    prediction, and a case with several labels when there is one (the first such row, in
    the rows' order, where several tie)."""
    frame = rows if isinstance(rows, Frame) else Frame.from_rows(rows)
    if not len(frame):
        return []
    picks: list[Pick] = []
    targets = frame.column("target")
    iou, probability = frame.numbers("iou"), frame.numbers("probability")
    correct = np.nan_to_num(frame.numbers("correct"), nan=0.0)
    multi = np.array([";" in (labels or "") for labels in frame.column("case_labels")])
    for target in sorted(set(targets)):
        mine = np.flatnonzero(targets == target)
        scored = mine[~np.isnan(iou[mine])]
        if scored.size:
            best = scored[np.argmax(iou[scored])]  # the first of equal maxima, as max()
            row = frame.row(best)
            picks.append(_pick("best IoU", row, f"IoU {row['iou']:.3f} ({row['method']})"))
        # most confident among the correct (None counts as 0, as it did): first maximum
        surest = correct[mine] == correct[mine].max()
        candidates = mine[surest]
        p = np.nan_to_num(probability[candidates], nan=0.0)
        row = frame.row(candidates[np.argmax(p)])
        picks.append(_pick("highest probability", row, f"p = {row['probability']:.3f}"))
        several = mine[multi[mine]]
        if several.size:
            row = frame.row(several[0])
            picks.append(_pick("multi-label", row, row["case_labels"].replace(";", ", ")))
    return picks


def _pick(kind: str, row: dict[str, Any], detail: str) -> Pick:
    return Pick(kind, row["target"], row["case_id"], row["dataset"], row["split"], detail)
