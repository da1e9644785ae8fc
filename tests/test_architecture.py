"""The layers of docs/architecture.md hold: every import of a project module goes to the
same layer or a lower one, there are no import cycles, and only the pages import
Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxrxai"
# Lowest first; a module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "cxrxai",
            "cxrxai.errors",
            "cxrxai.environment",
            "cxrxai.card",
            "cxrxai.xray",
            "cxrxai.sqlitedb",
            "cxrxai.csvout",
            "cxrxai.parallel",
            "cxrxai.thirdparty",
        ),
    ),
    ("images and cases", ("cxrxai.dicom", "cxrxai.imageio", "cxrxai.cases", "cxrxai.datasets",
                          "cxrxai.render", "cxrxai.pacs")),
    ("models", ("cxrxai.fold", "cxrxai.runner", "cxrxai.checkpoint", "cxrxai.training",
                "cxrxai.lungs", "cxrxai.ood")),
    ("explanations", ("cxrxai.explain",)),
    ("metrics", ("cxrxai.metrics",)),
    ("evaluation", ("cxrxai.evaluation",)),
    ("study", ("cxrxai.study",)),
    ("commands", ("cxrxai.demo", "cxrxai.cli", "cxrxai.warmup", "cxrxai.__main__",
                  "cxrxai.background")),
]  # fmt: skip


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of docs/architecture.md"
    return max(matches)[1]


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            # `from cxrxai import environment` imports the module cxrxai.environment
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


MODULES = {_module(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", list(MODULES))
def test_imports_run_downward_only(module):
    own = _layer(module)
    for target in _imports(MODULES[module]):
        assert not target.startswith("streamlit"), f"{module} imports Streamlit"
        if target.startswith("cxrxai"):
            assert _layer(target) <= own, (
                f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
            )


def test_no_import_cycles():
    graph = {
        module: {t for t in _imports(path) if t in MODULES and t != module}
        for module, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
