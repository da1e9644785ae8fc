"""Summaries of a results database computed once per state of its rows and kept in it:
what the Cases page shows before any filter (the sidebar's lists, IoU versus p with its
bootstrap CIs, the methods' paired comparison at a region setting), which on a whole split
take tens of seconds to compute (docs/benchmarks.md) and do not change until rows do.

A summary stores the state it was computed from - the writer's count of writes
(:func:`cxrxai.evaluation.store.count_write`), the largest row id, the metrics' and this
module's versions - and is recomputed when that differs. ``evaluate`` and
``merge-results`` refresh them after writing (:func:`refresh`); rows written around this
module (another tool updating values in place) are not seen, so write through it.

The stored values (JSON; the first view's rows as ``.npz`` arrays) are read as untrusted
(a results file may come from anyone): a value of the wrong shape is recomputed, never
shown.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Callable
from typing import Any

import sqlite_utils

from cxrxai.evaluation import browse
from cxrxai.evaluation.report import iou_versus_p
from cxrxai.evaluation.store import LOCALISATION, METRICS_VERSION, SUMMARIES, stale_rows, writes
from cxrxai.metrics.bootstrap import Estimate
from cxrxai.metrics.registry import COMPARED
from cxrxai.sqlitedb import write_transaction

FORMAT = 1  # bumped when a summary's computation or encoding changes
DEFAULT_SETTING = ("top-percent", 10.0)  # the Cases page's first view
DEFAULT_METRIC = COMPARED[0]  # the first the page offers (iou)

Overview = tuple[int, list[tuple[str, float]], list[str], list[str]]
Curves = dict[tuple[str, str], list[tuple[float, Estimate]]]


def state(db: sqlite_utils.Database) -> str:
    """What the stored summaries were computed from; any write through the store, or any
    row added around it, changes it."""
    largest = db.execute(f"select max(rowid) from {LOCALISATION}").fetchone()[0]
    return f"{writes(db)}:{largest}:{METRICS_VERSION}:{FORMAT}"


def _kept(
    db: sqlite_utils.Database,
    key: str,
    compute: Callable[[], Any],
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
    dump: Callable[[Any], Any] = json.dumps,
    load: Callable[[Any], Any] = json.loads,
) -> Any:
    """``compute()``, or its value kept under ``key`` for the rows' present state.
    ``encode``/``decode`` turn it into what ``dump``/``load`` write and read (JSON text
    by default); a stored value that does not decode is recomputed."""
    now = state(db)
    row = db.execute(f"select version, value from {SUMMARIES} where key = ?", [key]).fetchone()
    if row is not None and row[0] == now:
        try:
            return decode(load(row[1]))
        except (ValueError, TypeError, KeyError, IndexError, OSError, zipfile.BadZipFile):
            pass  # a damaged or forged value
    value = compute()
    stored = dump(encode(value))
    if stored is None:  # not keepable (a frame whose column mixes types)
        return value
    try:
        with write_transaction(db):
            db.execute(
                f"insert or replace into {SUMMARIES} (key, version, value) values (?, ?, ?)",
                [key, now, stored],
            )
    except sqlite3.OperationalError:  # a read-only file: show it, keep nothing
        pass
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def overview(db: sqlite_utils.Database) -> Overview:
    """Rows of an older metrics definition, the region settings, classes and methods."""

    def compute() -> Overview:
        return (
            stale_rows(db),
            browse.region_settings(db),
            browse.distinct(db, "target"),
            browse.distinct(db, "method"),
        )

    def decode(value: Any) -> Overview:
        stale, settings, targets, methods = value
        return (
            int(_number(stale)),
            [(_text(mode), _number(v)) for mode, v in settings],
            [_text(t) for t in targets],
            [_text(m) for m in methods],
        )

    return _kept(db, "overview", compute, lambda v: list(v), decode)


def iou_curves(db: sqlite_utils.Database) -> Curves:
    """IoU versus p (:func:`cxrxai.evaluation.report.iou_versus_p`)."""

    def encode(curves: Curves) -> list:
        return [
            [method, target, [[p, e.mean, e.low, e.high, e.n, e.n_missing] for p, e in points]]
            for (method, target), points in curves.items()
        ]

    def decode(value: Any) -> Curves:
        out: Curves = {}
        for method, target, points in value:
            out[(_text(method), _text(target))] = [
                (
                    _number(p),
                    Estimate(
                        _number(m), _number(lo), _number(hi), int(_number(n)), int(_number(k))
                    ),
                )
                for p, m, lo, hi, n, k in points
            ]
        return out

    return _kept(db, "iou_versus_p", lambda: iou_versus_p(db), encode, decode)


def comparison(
    db: sqlite_utils.Database,
    mode: str,
    value: float,
    metric: str,
    frame: browse.Frame | None = None,
) -> list[dict[str, Any]]:
    """The methods' paired comparison at one region setting over every class, method and
    prediction (the Cases page's view before a filter; :func:`browse.compared_methods`);
    ``frame``: the setting's rows when the caller has read them."""
    filters = browse.Filters(mode, value)

    def decode(table: Any) -> list[dict[str, Any]]:
        out = []
        for entry in table:
            if not isinstance(entry, dict):
                raise TypeError("not a row")
            for cell in entry.values():
                if not (cell is None or isinstance(cell, str | int | float)):
                    raise TypeError("not a cell")
            out.append(entry)
        return out

    return _kept(
        db,
        f"compare:{mode}:{value!r}:{metric}",
        lambda: browse.compared_methods(db, filters, metric, frame),
        lambda table: table,
        decode,
    )


def setting_frame(db: sqlite_utils.Database, mode: str, value: float) -> browse.Frame:
    """The Cases page's rows of one region setting (:func:`browse.setting_frame`); those of
    the first view's setting are kept in the database (NumPy arrays, no pickle: about 50
    MB for 400,000 rows) so that a fresh server reads one value instead of 400,000 rows."""
    if (mode, value) != DEFAULT_SETTING:
        return browse.setting_frame(db, mode, value)

    def load(stored: Any) -> bytes:
        if not isinstance(stored, bytes):
            raise TypeError("not a frame")
        return stored

    return _kept(
        db,
        f"frame:{mode}:{value!r}",
        lambda: browse.setting_frame(db, mode, value),
        lambda frame: frame,
        browse.Frame.from_bytes,
        dump=lambda frame: frame.to_bytes(),
        load=load,
    )


def is_unfiltered(filters: browse.Filters) -> bool:
    """Whether a comparison under ``filters`` is the stored one of its region setting
    (no class, method, prediction or shortcut filter; the IoU range does not apply)."""
    return (
        not filters.classes
        and not filters.methods
        and filters.correct is None
        and filters.shortcut is None
    )


def refresh(db: sqlite_utils.Database) -> None:
    """Compute (or confirm) the summaries of the Cases page's first view, after a write."""
    iou_curves(db)
    if DEFAULT_SETTING in overview(db)[1]:
        frame = setting_frame(db, *DEFAULT_SETTING)
        comparison(db, *DEFAULT_SETTING, DEFAULT_METRIC, frame)
