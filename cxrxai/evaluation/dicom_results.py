"""One explained radiograph as the results cxrxai sends back to a PACS
(:class:`cxrxai.pacs.results.CaseResult`): the model's probabilities, and per map its
region boxes and every metric of one region setting, computed by the same
:func:`~cxrxai.evaluation.evaluate.region_setting_metrics` that fills the results
database and the Review page, so the SR holds the numbers the rows hold."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cxrxai import __version__
from cxrxai.cases import Annotation, Case
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.evaluate import Evaluator, RegionSetting, region_setting_metrics
from cxrxai.explain.base import Heatmap
from cxrxai.lungs import lung_annotation
from cxrxai.pacs.results import Algorithm, CaseResult, MapResult, TruthBox
from cxrxai.runner import ModelBundle
from cxrxai.xray import XRayImage

EXPORT_REGION: RegionSetting = ("top-percent", 10.0)  # the Review page's default
NOT_MEASUREMENTS = ("mode", "value", "n_truth_pixels")


def algorithm(bundle: ModelBundle) -> Algorithm:
    card = bundle.card
    return Algorithm(
        model_name=card.name or card.architecture,
        card_version=f"format {card.format_version}",
        weights_sha256=bundle.weights_sha256,
        software_version=f"cxrxai {__version__}",
    )


def explained_result(
    bundle: ModelBundle,
    image: XRayImage,
    heatmaps: Iterable[Heatmap],
    annotations: Iterable[Annotation] = (),
    lungs: np.ndarray | None = None,
    region: RegionSetting = EXPORT_REGION,
    within_lungs: bool = False,
    empty: str = "nan",
) -> CaseResult:
    """``heatmaps`` at the image's size; ``annotations``: the case's truth (its boxes go
    back too, and the region metrics are scored against them)."""
    annotations = list(annotations)
    probs = bundle.predict_proba(image.pixels)[0]
    mode, value = region
    maps = []
    for heatmap in heatmaps:
        _, boxes, row = region_setting_metrics(
            heatmap,
            annotations,
            heatmap.target_label,
            mode,
            value,
            empty,
            lungs,
            image.meta.pixel_spacing_mm,
            within_lungs and lungs is not None,
        )
        measurements = {
            k: float(v)
            for k, v in row.items()
            if k not in NOT_MEASUREMENTS and isinstance(v, int | float) and not isinstance(v, bool)
        }
        maps.append(
            MapResult(
                method=heatmap.method,
                label=heatmap.target_label,
                values=heatmap.numpy(),
                settings={k: str(v) for k, v in heatmap.params.items()},
                region=f"{mode} {value:g}",
                boxes=tuple(tuple(float(c) for c in box) for box in boxes),
                measurements=measurements,
            )
        )
    truth = tuple(
        TruthBox(a.label, a.author, tuple(float(c) for c in a.box))
        for a in annotations
        if a.role == "finding" and a.kind == "box" and a.box is not None
    )
    return CaseResult(
        probabilities={label: float(p) for label, p in zip(bundle.labels, probs, strict=True)},
        predicted=tuple(bundle.labels[i] for i in bundle.card.positives(probs)),
        maps=tuple(maps),
        truth=truth,
    )


def evaluated_result(
    evaluator: Evaluator, case: Case, region: RegionSetting = EXPORT_REGION
) -> tuple[XRayImage, CaseResult] | None:
    """``case`` explained as ``evaluator`` explained it (its targets, settings, lung
    fields and cache: the maps come from the cache after the run) and scored at
    ``region``: the numbers equal the case's results rows at that setting. None for a
    case the evaluation left out (no target)."""
    if evaluator.external is not None:
        raise CxrxaiError("--to-pacs sends cxrxai's own maps; it does not go with --heatmaps.")
    image = case.load_image()
    probs = evaluator.bundle.predict_proba(image.pixels)[0]
    lungs_annotation = lung_annotation(case, image.pixels, evaluator.segmenter)
    lungs = lungs_annotation.to_mask(image.pixels.shape) if lungs_annotation else None
    targets = evaluator.targets(case, probs)
    if not targets:
        return None
    heatmaps = [
        evaluator.heatmap(method, image.pixels, label)
        for method in evaluator.methods
        for label in targets
    ]
    options = evaluator.options
    result = explained_result(
        evaluator.bundle,
        image,
        heatmaps,
        case.annotations,
        lungs,
        region,
        options.within_lungs,
        options.empty,
    )
    return image, result
