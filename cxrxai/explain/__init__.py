"""Explanations behind one interface: ``get_explainer(name).explain(bundle, image, target)``
returns a :class:`~cxrxai.explain.base.Heatmap` at the image's own resolution."""

from cxrxai.explain.base import Explainer, Heatmap, resolve_targets
from cxrxai.explain.registry import METHODS, get_explainer, list_methods

__all__ = ["METHODS", "Explainer", "Heatmap", "get_explainer", "list_methods", "resolve_targets"]
