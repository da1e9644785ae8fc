"""What every object cxrxai writes shares: the source image made fit to be referenced
(in one place), the codes, the equipment and algorithm attributes, the series."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from cxrxai.errors import CxrxaiError
from cxrxai.pacs.results import Algorithm

# cxrxai's own concepts (map shares, metrics, labels without a standard code) in a local
# coding scheme: "99" starts the designators PS3.16 8.2 leaves to local use.
SCHEME = "99CXRXAI"
SCHEME_NAME = "cxrxai explanation concepts"
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
FINDING = codes.SCT.Finding
CHEST_XRAY = hd.sr.CodedConcept("399208008", "SCT", "Chest X-ray")
MANUFACTURER = "cxrxai"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS - cxrxai explanation, research use"


def local(value: str, meaning: str | None = None) -> hd.sr.CodedConcept:
    """A concept of cxrxai's scheme (code values are at most 16 characters)."""
    return hd.sr.CodedConcept(value[:16], SCHEME, (meaning or value)[:64])


@dataclass(frozen=True)
class Series:
    """A new series for one kind of object on the source's study."""

    uid: str
    number: int
    description: str


def new_series(number: int, what: str) -> Series:
    return Series(hd.UID(), number, f"cxrxai {what}"[:64])


def prepared_source(source: pydicom.Dataset) -> pydicom.Dataset:
    """The source as highdicom should see it, fixed here once for every object:
    a PixelSpacing / ImagerPixelSpacing of 0 or less (pydicom-data's CR has 0\\0, which
    highdicom would copy into a SEG and dciodvfy reject) is dropped."""
    fixed = copy.deepcopy(source)
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = fixed.get(keyword)
        if value is not None and (len(value) != 2 or min(float(v) for v in value) <= 0):
            del fixed[keyword]
    if int(fixed.get("NumberOfFrames", 1) or 1) != 1 or "Rows" not in fixed:
        raise CxrxaiError("Results go back on single-frame radiographs only.")
    return fixed


def equipment(algorithm: Algorithm) -> dict[str, str]:
    """Enhanced General Equipment: who made the object."""
    return {
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": algorithm.model_name[:64] or "cxrxai model",
        "software_versions": algorithm.software_version[:64],
        "device_serial_number": algorithm.weights_sha256[:16] or "unknown",
    }


def algorithm_sequence(algorithm: Algorithm, method: str, settings: dict[str, str]):
    """DICOM Algorithm Identification for one explanation: the method named, the model
    and its weights in the parameters."""
    parameters = {
        "model": algorithm.model_name,
        "model card": algorithm.card_version,
        "weights sha256": algorithm.weights_sha256,
        **{f"{method}.{k}": str(v) for k, v in settings.items()},
    }
    return hd.AlgorithmIdentificationSequence(
        name=f"cxrxai {method}"[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm.version[:64],
        source=MANUFACTURER,
        parameters={k[:64]: v[:64] for k, v in parameters.items()},
    )


def finish(obj: pydicom.Dataset, source: pydicom.Dataset, series: Series) -> pydicom.Dataset:
    """What highdicom leaves for the caller: the source's orientation (a SEG of a CR/DX
    needs it to validate), its body part (so that Laterality may be absent for the
    unpaired chest), the series' description; the coding scheme declared."""
    if obj.Modality != "SR":
        general_image = obj.Modality != "PR"  # a GSPS has no General Image module
        if general_image and "PatientOrientation" in source and "PatientOrientation" not in obj:
            obj.PatientOrientation = source.PatientOrientation
        if source.get("BodyPartExamined"):
            obj.BodyPartExamined = source.BodyPartExamined
        elif source.get("Laterality") or source.get("ImageLaterality"):
            obj.Laterality = source.get("Laterality") or source.get("ImageLaterality")
        else:
            obj.Laterality = ""  # unknown: dciodvfy warns (docs/dicom.md)
    obj.SeriesDescription = series.description
    scheme = pydicom.Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    obj.CodingSchemeIdentificationSequence = [scheme]
    return obj


def unit_map(values: np.ndarray) -> np.ndarray:
    """A map as [0, 1] per pixel for the SEG and the overlay: positive evidence over its
    largest value (signed maps keep their positive part; CAMs are [0, 1] already)."""
    positive = np.clip(np.nan_to_num(values.astype(np.float32), nan=0.0), 0.0, None)
    top = float(positive.max())
    return positive / top if top > 0 else positive


def rectangle(box: tuple[float, float, float, float]) -> np.ndarray:
    """A box as a closed polyline (column, row) of pixel coordinates."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)
