"""The settings each explanation method takes, described once for the CLI, the UI and checks.

An explainer's settings are its constructor's keyword arguments (``get_explainer("gradcam",
layer="blocks.5")``). This module lists them with their types and defaults (read from the
signature, so a new method needs no entry here), checks values before any work starts
(a name that is not a setting, a number out of range, an unknown choice: one clear
message each), and parses the CLI's ``--param METHOD.NAME=VALUE``.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxrxai.errors import CxrxaiError

# Shap's image masker: a blur kernel, or OpenCV inpainting (shap.maskers.Image).
_MASKER = re.compile(r"blur\(\d+,\d+\)|inpaint_telea|inpaint_ns")


@dataclass(frozen=True)
class Rule:
    """What a setting's value may be; shared by every method with a setting of that name."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None  # the only values allowed
    suggestions: tuple[str, ...] | None = None  # offered in the UI; others allowed
    pattern: re.Pattern[str] | None = None
    ui: bool = True  # False: speed only (the map does not depend on it), CLI/library only


def _rules() -> dict[str, Rule]:
    from cxrxai.explain.lrp import COMPOSITES
    from cxrxai.explain.perturbation import SEGMENTERS

    return {
        "layer": Rule("CAM layer, a module name (default: the model card's target layer)"),
        "composite": Rule("LRP rules for the layers (zennit composite)", choices=tuple(COMPOSITES)),
        "num_samples": Rule("perturbed images LIME evaluates", minimum=10),
        "nsamples": Rule("coalitions KernelSHAP evaluates", minimum=10),
        "max_evals": Rule("model evaluations of SHAP's Partition explainer", minimum=10),
        "n_samples": Rule("noisy copies averaged", minimum=1),
        "n_steps": Rule("steps of the path integral", minimum=2),
        "sigma": Rule("noise std, fraction of the intensity range", minimum=0.0, maximum=1.0),
        "segmentation": Rule("superpixel algorithm", choices=SEGMENTERS),
        "n_segments": Rule("SLIC superpixels (about)", minimum=2),
        "masker": Rule(
            "what a hidden region becomes: blur(k,k) or OpenCV inpainting",
            suggestions=("blur(16,16)", "blur(32,32)", "blur(8,8)", "inpaint_telea", "inpaint_ns"),
            pattern=_MASKER,
        ),
        "batch_size": Rule("images per forward pass (speed only)", minimum=1, ui=False),
    }


@dataclass(frozen=True)
class Parameter:
    """One setting of one method."""

    name: str
    kind: type  # int, float or str
    default: Any
    optional: bool  # None is allowed (and means "the default behaviour")
    rule: Rule

    def check(self, method: str, value: Any) -> Any:
        """The value, converted to ``kind`` where lossless, or a CxrxaiError naming the fix."""
        where = f"{method} setting '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise CxrxaiError(f"The {where} needs a value ({self.rule.help}).")
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or isinstance(value, bool):
            raise CxrxaiError(
                f"The {where} must be a{'n' if self.kind is int else ''} "
                f"{self.kind.__name__}, got {value!r}."
            )
        rule = self.rule
        if rule.minimum is not None and value < rule.minimum:
            raise CxrxaiError(f"The {where} must be at least {rule.minimum:g}, got {value}.")
        if rule.maximum is not None and value > rule.maximum:
            raise CxrxaiError(f"The {where} must be at most {rule.maximum:g}, got {value}.")
        if rule.choices is not None and value not in rule.choices:
            raise CxrxaiError(f"The {where} must be one of {list(rule.choices)}, got '{value}'.")
        if rule.pattern is not None and not rule.pattern.fullmatch(value):
            examples = ", ".join(rule.suggestions or ())
            raise CxrxaiError(f"The {where} must look like one of: {examples}; got '{value}'.")
        return value

    def parse(self, method: str, text: str) -> Any:
        """A value typed on the command line."""
        text = text.strip()
        if self.optional and text.lower() in ("", "none", "default"):
            return None
        if self.kind in (int, float):
            try:
                number = float(text) if self.kind is float else int(text)
            except ValueError:
                raise CxrxaiError(
                    f"The {method} setting '{self.name}' must be a number, got '{text}'."
                ) from None
            return self.check(method, number)
        return self.check(method, text)


def _value_type(annotation: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def parameters(method: str) -> list[Parameter]:
    """The settings of a registered method, in signature order."""
    from cxrxai.explain.registry import METHODS, check_method

    check_method(method)
    cls = METHODS[method]
    hints = typing.get_type_hints(cls.__init__)
    rules = _rules()
    found = []
    for name, spec in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or spec.kind in (spec.VAR_KEYWORD, spec.VAR_POSITIONAL):
            continue
        kind, optional = _value_type(hints[name])
        found.append(Parameter(name, kind, spec.default, optional, rules.get(name, Rule(name))))
    return found


def check_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Checked (and losslessly converted) settings; an unknown name lists the known ones."""
    known = {p.name: p for p in parameters(method)}
    checked = {}
    for name, value in params.items():
        if name not in known:
            raise CxrxaiError(
                f"'{name}' is not a setting of {method}; its settings: "
                f"{', '.join(known) or 'none'}."
            )
        checked[name] = known[name].check(method, value)
    return checked


def parse_param_specs(specs: Iterable[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["gradcam.layer=blocks.5", "lime.num_samples=2000"]`` -> settings per method.

    A method named in a spec must be one of ``methods`` (a setting for a method that is not
    run is a typo, not something to ignore).
    """
    settings: dict[str, dict[str, Any]] = {}
    for spec in specs:
        head, equals, text = spec.partition("=")
        method, dot, name = head.strip().rpartition(".")
        if not equals or not dot or not method or not name:
            raise CxrxaiError(
                f"Cannot read the setting '{spec}': write METHOD.NAME=VALUE, "
                "e.g. gradcam.layer=blocks.5 or lime.num_samples=2000."
            )
        if method not in methods:
            raise CxrxaiError(
                f"The setting '{spec}' is for {method}, which is not among the methods "
                f"run ({', '.join(methods)}); add it to --methods."
            )
        known = {p.name: p for p in parameters(method)}
        if name not in known:
            check_params(method, {name: None})  # raises, listing the known settings
        settings.setdefault(method, {})[name] = known[name].parse(method, text)
    return settings


def changed(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that differ from the method's defaults and change the map (for captions
    and variant names; a batch size changes the speed only)."""
    defaults = {p.name: p.default for p in parameters(method) if p.rule.ui}
    return {k: v for k, v in params.items() if k in defaults and v != defaults[k]}


def describe(params: Mapping[str, Any]) -> str:
    """``layer=blocks.5, sigma=0.2`` (empty when there is nothing to say)."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def variant(method: str, params: Mapping[str, Any]) -> str:
    """The name results carry: ``gradcam``, or ``gradcam(layer=blocks.5)`` when settings
    differ from the defaults, so that variants of a method are compared, not mixed."""
    own = describe(changed(method, params))
    return f"{method}({own})" if own else method


def parse_variant(name: str) -> tuple[str, dict[str, Any]]:
    """``gradcam(layer=blocks.5)`` -> ("gradcam", {"layer": "blocks.5"}): the inverse of
    :func:`variant`, for results rows opened again (values typed as the settings say)."""
    method, bracket, inner = name.partition("(")
    if not bracket:
        return name, {}
    if not inner.endswith(")"):
        raise CxrxaiError(f"Cannot read the method variant '{name}'.")
    known = {p.name: p for p in parameters(method)}
    settings: dict[str, Any] = {}
    # values never hold ", " (layer names, composites, maskers such as blur(8,8) do not)
    for item in inner[:-1].split(", "):
        key, equals, text = item.partition("=")
        if not equals or key not in known:
            raise CxrxaiError(f"Cannot read the setting '{item}' of the method variant '{name}'.")
        settings[key] = known[key].parse(method, text)
    return method, settings
