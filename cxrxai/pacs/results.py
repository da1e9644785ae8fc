"""What cxrxai sends back to a PACS for one radiograph, in plain types (no torch): the
model's probabilities, each explanation map with its region boxes and measurements, the
truth boxes; and the algorithm that made them.

:mod:`cxrxai.pacs.objects` turns these into DICOM objects; the command line fills them
from an explanation run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the source's pixels


@dataclass(frozen=True)
class Algorithm:
    """The model and program that made the results (DICOM Algorithm Identification)."""

    model_name: str
    card_version: str
    weights_sha256: str
    software_version: str

    @property
    def version(self) -> str:
        return f"card {self.card_version}; weights sha256 {self.weights_sha256[:16]}"


@dataclass(frozen=True)
class MapResult:
    """One explanation map at the source image's size (``values``: float, larger = more
    evidence for ``label``), its region's boxes and measurements (metric -> value)."""

    method: str
    label: str
    values: np.ndarray
    settings: Mapping[str, Any] = field(default_factory=dict)
    region: str = ""  # how the region was cut from the map ("top-percent 5")
    boxes: tuple[Box, ...] = ()
    measurements: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.label}"


@dataclass(frozen=True)
class TruthBox:
    label: str
    author: str | None
    box: Box


@dataclass(frozen=True)
class CaseResult:
    """Everything sent back for one source image."""

    probabilities: Mapping[str, float]
    predicted: tuple[str, ...]
    maps: tuple[MapResult, ...] = ()
    truth: tuple[TruthBox, ...] = ()
