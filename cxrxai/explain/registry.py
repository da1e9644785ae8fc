"""Explainers by name: what the CLI's ``--methods`` and the UI's method picker list."""

from __future__ import annotations

from typing import Any

from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import Explainer
from cxrxai.explain.cam import CAM_EXPLAINERS
from cxrxai.explain.gradients import GRADIENT_EXPLAINERS
from cxrxai.explain.lrp import LrpExplainer
from cxrxai.explain.perturbation import PERTURBATION_EXPLAINERS

METHODS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (*CAM_EXPLAINERS, *GRADIENT_EXPLAINERS, *PERTURBATION_EXPLAINERS, LrpExplainer)
}


def list_methods() -> list[dict[str, Any]]:
    """name, description, needs_gradients of every registered method."""
    return [
        {"name": name, "description": cls.description, "needs_gradients": cls.needs_gradients}
        for name, cls in METHODS.items()
    ]


def check_method(name: str) -> None:
    if name not in METHODS:
        raise CxrxaiError(f"Unknown explanation method '{name}'; available: {sorted(METHODS)}")


def get_explainer(name: str, **params: Any) -> Explainer:
    """A method by name with its settings (each explainer's :attr:`Explainer.settings`),
    checked by the explainer first: a wrong setting is a clear message before any work."""
    check_method(name)
    return METHODS[name](**params)
