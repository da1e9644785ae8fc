"""No waiting for raters: every map a study will show is computed before anyone rates.

``python -m cxrxai study prepare --code CODE`` (started by Study admin when a study is
created, and again by any study page after a server restart while maps are missing) walks
the study's cases x methods, computes each map into the heatmap cache with exactly the key
the Study page reads, and records it in ``study_maps``. Already cached maps are only
recorded, so a restarted worker resumes where the last one stopped. The Study page opens a
study to raters when every map is ready, and Study admin shows the progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from cxrxai.datasets.registry import find_case
from cxrxai.errors import CxrxaiError
from cxrxai.explain.cache import HeatmapCache, image_hash
from cxrxai.explain.params import parse_variant
from cxrxai.explain.registry import get_explainer
from cxrxai.runner import ModelBundle
from cxrxai.sqlitedb import write_transaction
from cxrxai.study.service import explained_label
from cxrxai.study.sham import sham_target, split_sham


@dataclass(frozen=True)
class PanelMap:
    """The map a study panel shows: which explainer with which settings, for which output."""

    method: str  # the explainer's name
    params: dict[str, Any]
    target: int  # the output explained: the case's explained label, or a sham's other class


def panel_map(
    method: str, labels: list[str], probabilities: Sequence[float], explained: str
) -> PanelMap:
    """What the panel of ``method`` (a name, a variant ``gradcam(layer=blocks.6)`` or a sham
    ``sham:gradcam``) shows for a case whose panels explain ``explained``: the one rule of
    the Study page and of this preparation, so that the page finds the prepared map."""
    base, is_sham = split_sham(method)  # a sham: the map of another class
    name, params = parse_variant(base)
    if is_sham:
        return PanelMap(name, params, sham_target(labels, probabilities, explained))
    return PanelMap(name, params, labels.index(explained) if explained in labels else 0)


def map_count(db: sqlite_utils.Database, study_id: int) -> tuple[int, int]:
    """(maps ready, maps the study shows): cases x methods."""
    study = db["studies"].get(study_id)
    methods = len(_methods(study))
    total = db["study_cases"].count_where("study_id = ?", [study_id]) * methods
    ready = db["study_maps"].count_where("study_id = ?", [study_id])
    return ready, total


def is_open(db: sqlite_utils.Database, study_id: int) -> bool:
    """Whether raters may rate: every map is ready, or the study computes maps on the page
    (made before preparation existed, or created with ``prepare=False``)."""
    if not db["studies"].get(study_id).get("prepare"):
        return True
    ready, total = map_count(db, study_id)
    return ready >= total


def _methods(study: dict) -> list[str]:
    import json

    return list(json.loads(study["methods"]))


def prepare_study(
    db: sqlite_utils.Database,
    study_id: int,
    bundle: ModelBundle,
    root: Path,
    cache: HeatmapCache | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    log: Callable[[str], None] = print,
) -> int:
    """Compute (or find cached) every map of the study; returns the maps recorded now.
    ``keep_going`` is asked between maps (a worker stops when its server has ended)."""
    cache = cache or HeatmapCache()
    study = db["studies"].get(study_id)
    methods = _methods(study)
    done = {
        (row["position"], row["method"])
        for row in db["study_maps"].rows_where("study_id = ?", [study_id])
    }
    recorded = 0
    for case_row in db["study_cases"].rows_where("study_id = ?", [study_id], order_by="position"):
        missing = [m for m in methods if (case_row["position"], m) not in done]
        if not missing:
            continue
        case = find_case(case_row["dataset"], case_row["split"], case_row["case_id"], root)
        if case is None:
            raise CxrxaiError(
                f"Study case '{case_row['case_id']}' was not found under '{root}': the "
                "study cannot be prepared on this machine."
            )
        pixels = case.load_image().pixels
        probabilities = bundle.predict_proba(pixels)[0]
        label, _ = explained_label(study, case_row["target"], bundle.card, probabilities)
        for method in missing:
            if not keep_going():
                return recorded
            shown = panel_map(method, bundle.labels, probabilities, label)
            index = shown.target
            started = time.perf_counter()
            explainer = get_explainer(shown.method, **shown.params)
            (heatmap,) = cache.explain(explainer, bundle, pixels, index)
            with write_transaction(db):
                db["study_maps"].insert(
                    {
                        "study_id": study_id,
                        "position": case_row["position"],
                        "method": method,
                        "image_sha256": image_hash(pixels),
                        "target": bundle.labels[index],
                        "seconds": round(heatmap.seconds, 3),
                        "cached": int(heatmap.from_cache),
                    },
                    replace=True,
                )
            recorded += 1
            log(f"case {case_row['position'] + 1}, {method}: {time.perf_counter() - started:.1f} s")
    return recorded
