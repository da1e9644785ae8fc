"""The PACS page's work: a search as table rows, a study fetched as cases."""

from __future__ import annotations

import sys

from cxrxai.cases import Case
from cxrxai.errors import CxrxaiError


def _source(url: str):  # -> PacsSource; the PACS extra is imported only when used
    from cxrxai.pacs import require

    require()
    from cxrxai.pacs.address import load_credentials, parse_address
    from cxrxai.pacs.connect import open_source

    return open_source(parse_address(url), load_credentials())


def find_on_pacs(url: str, study: str, accession: str, modalities: str) -> list[dict]:
    """The instances a search finds, as rows (UIDs, modality, size; no identifiers)."""
    from cxrxai.pacs.source import search

    query = search(study, accession, modalities)
    source = _source(url.strip())
    try:
        found = source.find(query)
    finally:
        source.close()
    return [
        {
            "modality": ref.modality,
            "size": f"{ref.columns} x {ref.rows}" if ref.rows and ref.columns else "?",
            "frames": ref.frames,
            "study": ref.study_uid,
            "series": ref.series_uid,
            "instance": ref.sop_uid,
        }
        for ref in found
    ]


def open_study(url: str, study: str) -> list[Case]:
    """The study's radiographs, fetched into the cache (readings on it as their truth)."""
    from cxrxai.pacs.cases import pacs_cases
    from cxrxai.pacs.source import Query

    source = _source(url.strip())
    warnings: list[str] = []
    try:
        cases = pacs_cases(source, Query(study), warn=warnings.append)
    finally:
        source.close()
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)
    if not cases:
        raise CxrxaiError(f"Study {study} holds no radiograph cxrxai can read.")
    return cases


def send_to_pacs(
    url: str,
    path,
    bundle,
    image,
    heatmaps: list,
    annotations: list,
    lungs,
    region: tuple[str, float],
    within_lungs: bool,
    empty: str,
    overlays: bool,
    parametric_maps: bool = False,
) -> int:
    """The Review page's maps of the DICOM image at ``path`` as SR, SEG, GSPS (and
    overlays, Parametric Maps) on its study; how many objects were sent."""
    from cxrxai.evaluation.dicom_results import algorithm, explained_result
    from cxrxai.pacs.objects import send_results

    result = explained_result(
        bundle, image, heatmaps, annotations, lungs, region, within_lungs, empty
    )
    source = _source(url.strip())
    try:
        pixels = image.pixels if overlays else None
        return send_results(source, path, result, algorithm(bundle), pixels, parametric_maps)
    finally:
        source.close()
