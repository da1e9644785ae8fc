"""Sanity check of explanations (Adebayo et al. 2018, named in the VinDr study):
cascading model-parameter randomisation from the top layer down.

A map that still looks the same after the classifier and the top blocks are
re-initialised does not explain the trained model. Similarity between the original and
each randomised map: Spearman rank correlation of the absolute values and SSIM of the
min-max normalised maps (scipy and scikit-image do the arithmetic).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrxai.explain.registry import get_explainer
from cxrxai.metrics.agreement import compare_maps
from cxrxai.runner import ModelBundle

# A method "fails" when, with every group randomised, its map still correlates this much
# (positively: a map that turned into its opposite - rho -0.7 - changed with the model).
FAIL_SPEARMAN = 0.5


@dataclass
class SanityRow:
    method: str
    randomised_through: str  # the deepest group re-initialised so far (cascading)
    groups_randomised: int
    spearman: float
    ssim: float


def layer_groups(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Top-level layers in forward order, with sequential containers opened one level, so
    the cascade goes classifier -> head -> last block -> ... -> stem."""
    groups: list[tuple[str, list[nn.Module]]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            groups += [(f"{name}.{sub}", [module]) for sub, module in child.named_children()]
        elif any(p.numel() for p in child.parameters()):
            groups.append((name, [child]))
    return groups


def _reinitialise(modules: list[nn.Module]) -> None:
    for module in modules:
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            if hasattr(sub, "reset_running_stats"):
                sub.reset_running_stats()


def cascading_randomisation(
    bundle: ModelBundle,
    image: np.ndarray,
    methods: list[str],
    target: int,
    seed: int = 0,
    max_groups: int | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SanityRow]:
    """Rows per method and cascade step; the trained bundle is never modified.
    ``params``: settings per method name (:mod:`cxrxai.explain.params`); ``progress(done,
    total)`` is called after each step (the dashboard's progress bar)."""
    params = params or {}
    explainers = {name: get_explainer(name, **params.get(name, {})) for name in methods}
    for explainer in explainers.values():
        explainer.check(bundle)
    original = {
        name: explainer.explain(bundle, image, target=target, seed=seed)[0].numpy()
        for name, explainer in explainers.items()
    }
    model = copy.deepcopy(bundle.model)
    # Uncompiled: the weights change at every step, and each change would recompile.
    randomised_bundle = replace(bundle, model=model, compile=False)
    groups = list(reversed(layer_groups(model)))[: max_groups or None]
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step, (name, modules) in enumerate(groups, start=1):
            _reinitialise(modules)
            model.eval()
            for method, explainer in explainers.items():
                values = explainer.explain(randomised_bundle, image, target=target, seed=seed)[0]
                rho, ssim = compare_maps(original[method], values.numpy())
                rows.append(SanityRow(method, name, step, rho, ssim))
            if progress is not None:
                progress(step, len(groups))
    return rows


def deepest(rows: list[SanityRow]) -> dict[str, SanityRow]:
    """Each method's row with the most groups randomised (its last step)."""
    return {row.method: row for row in rows}


def verdicts(rows: list[SanityRow]) -> dict[str, bool]:
    """True = passes: after the deepest randomisation the map no longer correlates."""
    return {method: row.spearman < FAIL_SPEARMAN for method, row in deepest(rows).items()}
