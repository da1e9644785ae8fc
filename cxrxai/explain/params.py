"""Settings by method name, for the CLI, the UI and results: listing them, checking them,
``--param METHOD.NAME=VALUE`` and variant names such as ``gradcam(layer=blocks.5)``.

Each explainer declares its own settings next to its class
(:attr:`cxrxai.explain.base.Explainer.settings`); this module only finds them by name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import OLD_NAMES, Setting
from cxrxai.explain.registry import METHODS, check_method


def parameters(method: str) -> list[Setting]:
    """The settings of a registered method, in declaration order."""
    check_method(method)
    return list(METHODS[method].settings)


def check_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Checked (and losslessly converted) settings, by the explainer's own constructor; an
    unknown name lists the known ones."""
    check_method(method)
    checked = METHODS[method](**params).params
    return {OLD_NAMES.get(name, name): checked[OLD_NAMES.get(name, name)] for name in params}


def parse_param_specs(specs: Iterable[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["gradcam.layer=blocks.5", "lime.n_samples=2000"]`` -> settings per method.

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
                "e.g. gradcam.layer=blocks.5 or lime.n_samples=2000."
            )
        if method not in methods:
            raise CxrxaiError(
                f"The setting '{spec}' is for {method}, which is not among the methods "
                f"run ({', '.join(methods)}); add it to --methods."
            )
        name = OLD_NAMES.get(name, name)
        known = {p.name: p for p in parameters(method)}
        if name not in known:
            check_params(method, {name: None})  # raises, listing the known settings
        settings.setdefault(method, {})[name] = known[name].parse(method, text)
    return settings


def changed(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that differ from the method's defaults and change the map (for captions
    and variant names; a batch size changes the speed only)."""
    defaults = {p.name: p.default for p in parameters(method) if p.ui}
    params = {OLD_NAMES.get(k, k): v for k, v in params.items()}
    return {k: v for k, v in params.items() if k in defaults and v != defaults[k]}


def _written(value: Any) -> str:
    """A value as a variant name shows it: as typed, or quoted (Python's repr) when it
    holds the separator ", ", starts with a quote or has surrounding spaces, so that
    :func:`parse_variant` reads back any value."""
    text = str(value)
    if isinstance(value, str) and (
        ", " in text or text[:1] in ("'", '"') or text != text.strip() or not text
    ):
        return repr(value)
    return text


def describe(params: Mapping[str, Any]) -> str:
    """``layer=blocks.5, sigma=0.2`` (empty when there is nothing to say)."""
    return ", ".join(f"{k}={_written(v)}" for k, v in params.items())


def variant(method: str, params: Mapping[str, Any]) -> str:
    """The name results carry: ``gradcam``, or ``gradcam(layer=blocks.5)`` when settings
    differ from the defaults, so that variants of a method are compared, not mixed."""
    own = describe(changed(method, params))
    return f"{method}({own})" if own else method


def _items(inner: str) -> list[str]:
    """``a=1, b='x, y'`` -> ["a=1", "b='x, y'"]: split at ", " outside quotes."""
    items, start, quote, i = [], 0, "", 0
    while i < len(inner):
        char = inner[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in ("'", '"'):
            quote = char
        elif inner.startswith(", ", i):
            items.append(inner[start:i])
            start = i + 2
            i += 1
        i += 1
    items.append(inner[start:])
    return items


def parse_variant(name: str) -> tuple[str, dict[str, Any]]:
    """``gradcam(layer=blocks.5)`` -> ("gradcam", {"layer": "blocks.5"}): the inverse of
    :func:`variant` for any value, for results rows opened again (values typed as the
    settings say; names of earlier versions, such as ``lime(num_samples=2000)``, read)."""
    method, bracket, inner = name.partition("(")
    if not bracket:
        return name, {}
    if not inner.endswith(")"):
        raise CxrxaiError(f"Cannot read the method variant '{name}'.")
    known = {p.name: p for p in parameters(method)}
    settings: dict[str, Any] = {}
    for item in _items(inner[:-1]):
        key, equals, text = item.partition("=")
        key = OLD_NAMES.get(key, key)
        if not equals or key not in known:
            raise CxrxaiError(f"Cannot read the setting '{item}' of the method variant '{name}'.")
        if text[:1] in ("'", '"'):
            try:
                text = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise CxrxaiError(
                    f"Cannot read the setting '{item}' of the method variant '{name}'."
                ) from None
            settings[key] = known[key].check(method, text)
        else:
            settings[key] = known[key].parse(method, text)
    return method, settings
