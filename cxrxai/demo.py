"""The demo set: a few curated real cases read in place from the data root, or, when no
data root exists, the real CR chest DICOM shipped by the PyPI package ``pydicom-data``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cxrxai import environment as places
from cxrxai.cases import Case
from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.covidqu import CLASSES, load_covid_qu_ex
from cxrxai.datasets.nih import load_nih_bbox
from cxrxai.environment import DEMO_CHECKPOINT, data_root
from cxrxai.errors import DatasetError
from cxrxai.evaluation.evaluate import RunOptions, Summary, evaluate_cases
from cxrxai.evaluation.store import open_results, record_run
from cxrxai.explain.cache import HeatmapCache
from cxrxai.explain.registry import get_explainer
from cxrxai.lungs import LungSegmenter
from cxrxai.runner import ModelBundle

DEMO_PER_CLASS = {"COVID-19": 4, "Non-COVID": 2, "Normal": 2}
DEMO_NIH_FINDINGS = ("Cardiomegaly", "Effusion", "Mass", "Pneumothorax", "Atelectasis")


def demo_cases(root: Path | None = None) -> list[Case]:
    """Curated cases: COVID-19 with infection masks, controls, NIH boxes of several
    findings. Falls back to the pydicom-data chest radiograph when no data is found."""
    root = root or data_root()
    cases: list[Case] = []
    val = root / "covid-qu-ex" / "Val"
    if val.is_dir():
        by_class = {c: [x for x in load_covid_qu_ex(val) if x.labels == [c]] for c in CLASSES}
        for class_name, count in DEMO_PER_CLASS.items():
            pool = by_class.get(class_name, [])
            # Spread the picks over the split instead of taking neighbouring files.
            step = max(len(pool) // max(count, 1), 1)
            cases += pool[::step][:count]
    nih = root / "nih-bbox"
    if (nih / "BBox_List_2017.csv").is_file():
        nih_cases = load_nih_bbox(nih)
        for finding in DEMO_NIH_FINDINGS:
            match = next((c for c in nih_cases if c.labels == [finding]), None)
            if match is not None:
                cases.append(match)
    return cases or [sample_dicom_case()]


def scorable(cases: list[Case], labels: list[str]) -> list[Case]:
    """The cases a model can be judged on: a label among its outputs, or no label at all
    (an upload, the sample DICOM). What the Review page offers and precomputes."""
    return [c for c in cases if not c.labels or set(c.labels) & set(labels)]


def sample_dicom_case() -> Case:
    """The real CR chest PA radiograph of pydicom-data (no annotations)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        raise DatasetError("pydicom-data is not installed: pip install -r requirements.txt")
    return Case("pydicom-data/RG1_UNCR", Path(path), dataset="pydicom-data")


DEMO_METHODS = ("gradcam", "lrp")  # the Review page's default panels


def demo_bundle() -> ModelBundle:
    """The demo checkpoint, loaded (once per caller: pass it on)."""
    return load_checkpoint(DEMO_CHECKPOINT)


def precompute_demo(
    methods: tuple[str, ...] = DEMO_METHODS,
    root=None,
    progress=lambda items: items,
    bundle=None,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Cache the default explanations of every demo case for its predicted label (what the
    Review page opens on), so the demo shows them at once. Returns the maps computed.
    ``bundle``: the demo checkpoint when the caller has it loaded already. ``keep_going``
    is asked before each map (a background job stops once its dashboard has ended)."""
    bundle = bundle or demo_bundle()
    cache = HeatmapCache()
    before = sum(1 for _ in cache.directory.rglob("*.npz")) if cache.directory.exists() else 0
    for case in progress(scorable(demo_cases(root), bundle.labels)):
        pixels = case.load_image().pixels
        target = bundle.card.explained_by_default(bundle.predict_proba(pixels)[0])
        for method in methods:
            if not keep_going():
                return sum(1 for _ in cache.directory.rglob("*.npz")) - before
            cache.explain(get_explainer(method), bundle, pixels, target=target)
    return sum(1 for _ in cache.directory.rglob("*.npz")) - before


def evaluate_demo(
    methods: tuple[str, ...] = DEMO_METHODS, root=None, db_path=None, bundle=None
) -> Summary:
    """Score the demo cases' maps for their labels into ``db_path`` (default
    :func:`cxrxai.environment.demo_results_path`), the Cases page's content until
    a batch evaluation exists. Resumes like ``evaluate``: scored units are skipped.
    ``bundle``: the demo checkpoint when the caller has it loaded already."""
    root = root or data_root()
    bundle = bundle or demo_bundle()
    cases = [c for c in demo_cases(root) if set(c.labels) & set(bundle.labels)]
    if not cases:  # e.g. only the unlabelled sample DICOM: no database at all
        return Summary()
    db = open_results(db_path or places.demo_results_path())
    options = RunOptions()
    segmenter = LungSegmenter.load(device=str(bundle.device))  # lungs of the NIH and DICOM cases
    record_run(
        db,
        bundle.path,
        bundle.weights_sha256,
        root,
        "demo",
        list(methods),
        within_lungs=options.within_lungs,
        empty=options.empty,
        seed=options.seed,
        lung_model=segmenter.describe(),
    )
    return evaluate_cases(
        bundle, cases, list(methods), db, options, HeatmapCache(), segmenter=segmenter
    )
