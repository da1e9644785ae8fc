"""The Cases page on a research-scale results database, through Streamlit's AppTest.

A synthetic database shaped like a ``--cases`` x 2-method evaluation (9 region settings:
3.6 million rows for 200,000 cases; random metric values, three classes) is written to a
temporary folder; the page is then timed on its first view, after a filter change and on
a rerun with the same filters (a row selected). Synthetic because no shared dataset is
that large; the page's work depends on the row count, not on the values.

Run: ``.venv/bin/python -m bench.bench_cases_page [--cases 200000] [--db PATH]`` (about 6
minutes, 2 with a database kept by ``--db``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import streamlit as st

from cxrxai.evaluation import store, summaries
from cxrxai.evaluation.evaluate import DEFAULT_REGIONS

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Edema", "Atelectasis", "Consolidation")


def build(path: Path, cases: int) -> int:
    """The synthetic results database; returns its row count."""
    db = store.open_results(path)
    rng = random.Random(0)

    def rows():
        for c in range(cases):
            for method in ("gradcam", "lrp"):
                for mode, value in DEFAULT_REGIONS:
                    yield {
                        "checkpoint_sha256": "0" * 64, "case_id": f"synthetic/p{c}",
                        "dataset": "synthetic", "split": "test", "case_labels": CLASSES[c % 3],
                        "method": method, "target": CLASSES[c % 3], "predicted": CLASSES[0],
                        "correct": int(c % 3 == 0), "probability": rng.random(), "mode": mode,
                        "value": value, "unit": "px", "n_truth_pixels": 100, "n_raters": 1,
                        "iou": rng.random(), "dice": rng.random(), "hit": float(c % 2),
                        "lung_relevance": rng.random(), "metrics_version": store.METRICS_VERSION,
                    }  # fmt: skip

    db[store.LOCALISATION].insert_all(rows(), batch_size=20_000)
    return db[store.LOCALISATION].count


def _step(app, action: str):  # -> AppTest, ready to run
    if action == "first view":
        return app.switch_page("pages/cases.py")
    if action == "a filter changed":
        return app.radio[0].set_value("correct")
    return app  # a rerun with the same filters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument(
        "--db", type=Path, help="keep the synthetic database here and reuse it when it exists"
    )
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "results.sqlite"
        start = time.perf_counter()
        if path.exists():
            count = store.open_results(path)[store.LOCALISATION].count
        else:
            count = build(path, args.cases)
        print(
            f"{time.strftime('%Y-%m-%d')}  {platform.machine()}, {os.cpu_count()} CPUs; "
            f"{count:,} rows, written or read in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        os.environ["CXRXAI_RESULTS"] = str(path)
        os.environ["CXRXAI_BACKGROUND_MAPS"] = "0"
        db = store.open_results(path)  # the migrations (the Cases page's index), once
        start = time.perf_counter()
        summaries.refresh(db)
        took = time.perf_counter() - start
        print(f"{'summaries (end of evaluate)':<28s} {took:6.1f} s", flush=True)
        db[store.SUMMARIES].delete_where()  # a database written before them: the page's job
        for label, actions in (
            ("without stored summaries", ("first view",)),
            ("with stored summaries", ("first view", "a filter changed", "a rerun")),
        ):
            st.cache_data.clear()  # each a fresh server process
            st.cache_resource.clear()
            app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900)
            app.run()
            for action in actions:
                start = time.perf_counter()
                _step(app, action).run()
                assert not app.exception, app.exception
                print(f"{label}, {action:<18s} {time.perf_counter() - start:6.2f} s", flush=True)


if __name__ == "__main__":
    main()
