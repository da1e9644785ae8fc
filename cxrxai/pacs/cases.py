"""A PACS search as cxrxai cases: what ``--dataset pacs`` and the dashboard's PACS
source hand to evaluate, explain, predict and study creation."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from cxrxai.cases import Case
from cxrxai.errors import CxrxaiError, DatasetError, PacsError
from cxrxai.pacs.cache import OBJECTS, InstanceCache, check_radiograph
from cxrxai.pacs.source import (
    MAX_FOUND,
    RADIOGRAPH_MODALITIES,
    InstanceRef,
    PacsSource,
    Query,
    check_uid,
)

DATASET = "pacs"
# objects a study holds beside its images (reports, regions, presentation states)
NOT_IMAGES = ("SR", "SEG", "PR", "KO")
# those that may hold a reading: the case's truth (cxrxai.pacs.truth)
READINGS = ("SEG", "SR")


def case_id(ref: InstanceRef) -> str:
    """A PACS case's id: its SOP Instance UID (no patient identifier)."""
    return ref.sop_uid


def pacs_cases(
    source: PacsSource,
    query: Query,
    cache: InstanceCache | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Case]:
    """The radiographs ``query`` finds on ``source``, fetched into ``cache``. Instances
    that are not single-frame CR/DX radiographs, or that cannot be read, are left out
    with a warning (``warn``, default stderr); none left is an error."""
    cache = cache or InstanceCache()
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    wanted = query
    if query.study_uid is not None or query.accession is not None:
        # everything on the study, so that what is left out can be named
        query = Query(query.study_uid, query.accession, modalities=(), limit=MAX_FOUND)
    found = source.find(query)
    cases: list[Case] = []
    skipped = 0
    for ref in sorted(found, key=_order):
        if ref.modality not in wanted.modalities:
            if ref.modality not in NOT_IMAGES:
                skipped += 1
                why = (
                    f"not among the modalities asked ({', '.join(wanted.modalities)})"
                    if ref.modality in RADIOGRAPH_MODALITIES
                    else "not a chest radiograph"
                )
                warn(f"instance {ref.sop_uid} is {ref.modality}: {why}, left out")
            continue
        label = f"{source.address} instance {ref.sop_uid}"
        try:
            check_radiograph(ref, label)
            path = cache.get(source, ref)
        except PacsError:
            raise  # the PACS itself failed: stop rather than run on part of the study
        except CxrxaiError as exc:
            skipped += 1
            warn(str(exc))
            continue
        cases.append(
            Case(case_id=case_id(ref), image_path=path, dataset=DATASET, split=ref.study_uid)
        )
        if len(cases) >= wanted.limit:
            break
    readings = [r for r in found if r.modality in READINGS]
    if cases and readings:
        paths = []
        for ref in readings:
            try:
                paths.append(cache.get_object(source, ref))
            except PacsError:
                raise
            except CxrxaiError as exc:
                warn(str(exc))
        _attach_readings(cases, paths, warn)
    if not cases:
        raise CxrxaiError(
            f"{source.address} holds no readable {'/'.join(wanted.modalities)} radiograph for "
            f"this search{f' ({skipped} other instance(s) left out)' if skipped else ''}."
        )
    return cases


def cached_cases(study_uid: str, cache: InstanceCache | None = None) -> list[Case]:
    """The instances of ``study_uid`` fetched before, as cases (the Cases page reopening
    a PACS case, ``--dataset pacs --split STUDY_UID`` without ``--url``)."""
    try:
        check_uid(study_uid, "The study (--split)")
    except PacsError as exc:
        raise DatasetError(str(exc)) from None
    folder = (cache or InstanceCache()).root / study_uid
    if not folder.is_dir():
        raise DatasetError(
            f"Study {study_uid} is not in the PACS cache ('{folder}'): fetch it first with "
            "--dataset pacs --url URL --study UID."
        )
    cases = [
        Case(case_id=path.stem, image_path=path, dataset=DATASET, split=study_uid)
        for path in sorted(folder.glob("*.dcm"))
    ]
    readings = sorted((folder / OBJECTS).glob("*.dcm"))
    if readings:
        _attach_readings(cases, readings, lambda text: print(f"warning: {text}", file=sys.stderr))
    return cases


def _attach_readings(cases: list[Case], paths: list[Path], warn: Callable[[str], None]) -> None:
    """The readings' annotations onto the cases they reference; their finding labels
    become the cases' labels."""
    import pydicom

    from cxrxai.pacs import require

    require()
    from cxrxai.pacs.truth import readings

    found = readings((pydicom.dcmread(path) for path in paths), warn)
    for case in cases:
        case.annotations = [*case.annotations, *found.get(case.case_id, [])]
        case.labels = sorted({a.label for a in case.annotations if a.role == "finding"})


def _order(ref: InstanceRef) -> tuple[str, int, int, str]:
    return (ref.study_uid, ref.series_number or 0, ref.instance_number or 0, ref.sop_uid)
