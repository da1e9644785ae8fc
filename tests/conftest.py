"""Shared fixtures. Tests needing ../shared/data FAIL when it is missing and CI=true,
and skip with the reason otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxrxai.environment import BACKGROUND_MAPS_ENV_VAR, data_root

# No background LIME/SHAP job in the dashboards the tests start (AppTest and the browser
# tests' servers inherit this): it would compete for the CPU with what is measured. The
# one test of that job turns it on for its own server.
os.environ[BACKGROUND_MAPS_ENV_VAR] = "0"


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = (
        f"{what} not found at '{path}'. Set $CXRXAI_DATA to the folder holding the shared "
        "datasets (default: ../shared/data next to the repository)."
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(data_root(), "The shared data root")


@pytest.fixture(scope="session")
def covid_root(shared_data: Path) -> Path:
    return _require(shared_data / "covid-qu-ex", "COVID-QU-Ex")


@pytest.fixture(scope="session")
def nih_root(shared_data: Path) -> Path:
    return _require(shared_data / "nih-bbox", "The NIH bounding-box subset")


@pytest.fixture(scope="session")
def rg1_files() -> dict[str, str]:
    """The real CR chest radiograph of pydicom-data in its four encodings."""
    from pydicom.data import get_testdata_file

    files = {}
    for name in ("RG1_UNCR", "RG1_J2KR", "RG1_UNCI", "RG1_J2KI"):
        path = get_testdata_file(f"{name}.dcm")
        assert path is not None, f"{name}.dcm missing: pip install pydicom-data"
        files[name] = str(path)
    return files


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A factory of small random-weight timm resnet18 checkpoints (built offline) for
    tests of code that only needs *a* model: ``tiny_checkpoint(labels=..., size=...)``."""
    import torch

    from cxrxai.card import ModelCard
    from cxrxai.checkpoint import build_network, save_checkpoint

    def make(
        labels=("a", "b"), size=48, target_layer="layer3", task="multiclass", thresholds=None
    ) -> Path:
        card = ModelCard(
            architecture="resnet18",
            labels=list(labels),
            task=task,
            input_size=(size, size),
            in_channels=1,
            normalisation={"mean": [0.5], "std": [0.25]},
            target_layer=target_layer,
            thresholds=dict(thresholds or {}),
        )
        torch.manual_seed(0)
        return save_checkpoint(build_network(card), card, tmp_path_factory.mktemp("ckpt"))

    return make


@pytest.fixture(scope="session")
def small_card():
    """A factory of three-label model cards (no weights): ``small_card(task, thresholds)``."""
    from cxrxai.card import ModelCard

    def make(task: str = "multiclass", thresholds: dict[str, float] | None = None) -> ModelCard:
        return ModelCard(
            architecture="resnet18",
            labels=["x", "y", "z"],
            task=task,
            input_size=(32, 32),
            in_channels=1,
            normalisation={"mean": [0.5], "std": [0.25]},
            target_layer="layer4",
            thresholds=thresholds or {},
        )

    return make
