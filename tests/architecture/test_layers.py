"""The import graph keeps the house's shape (DESIGN.md): data flows one way, layer by layer.

Every ``import`` in src/cxreport (module level and inside functions) is read with ``ast``; a
module may import its own layer or a lower one, ``metrics`` never imports ``models`` or
``checkpoint``, nothing imports ``cli``, and there is no import cycle except through a
registry's lazy loader (a function that imports the modules whose decorators fill the table).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cxreport"

# Lowest first. A module's layer is that of its first package below cxreport (or its own name).
LAYERS = [
    {"errors", "config", "labels", "registry", "llm", "fsio", "hub"},
    {"data", "text", "examples"},  # examples: the sample films behind `generate --example`
    {"models", "metrics", "checkpoint"},
    {"inference", "annotate", "training"},
    {"serve", "interop"},  # interop: DICOM and FHIR around inference, as serve is HTTP
    {"cli", "__main__"},
]
# Functions whose imports exist to fill a registry on first lookup (allowed to close a cycle).
REGISTRY_LOADERS = {"_load_components", "_load_all"}
FORBIDDEN = {"metrics": {"models", "checkpoint"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports() -> dict[str, list[tuple[str, str | None]]]:
    """module -> [(imported cxreport module, enclosing function or None)]."""
    graph: dict[str, list[tuple[str, str | None]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        edges: list[tuple[str, str | None]] = []

        def visit(node, func):
            for child in ast.iter_child_nodes(node):
                inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
                if isinstance(child, ast.Import):
                    edges.extend((a.name, inner) for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    target = _resolve(child, module, path.name == "__init__.py")
                    for a in child.names:  # `from cxreport.models import encoders` names a module
                        sub = f"{target}.{a.name}"
                        edges.append((sub if _exists(sub) else target, inner))
                visit(child, inner)

        visit(ast.parse(path.read_text(encoding="utf-8")), None)
        graph[module] = [(m, f) for m, f in edges if m == "cxreport" or m.startswith("cxreport.")]
    return graph


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cxreport"


def layer(module: str) -> int:
    name = area(module)
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"{module}: area {name!r} has no layer; add it to LAYERS (and DESIGN.md)")


def test_every_area_has_a_layer():
    for module in imports():
        if module != "cxreport":
            layer(module)


def test_no_import_reaches_up_a_layer():
    bad = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
           for m, edges in imports().items() if m != "cxreport"
           for t, _ in edges if t != "cxreport" and layer(t) > layer(m)]
    assert not bad, "\n".join(bad)


def test_metrics_never_imports_models_or_checkpoints():
    bad = [f"{m} imports {t}" for m, edges in imports().items() for t, _ in edges
           if area(t) in FORBIDDEN.get(area(m), ())]
    assert not bad, "\n".join(bad)


def test_nothing_imports_cli():
    bad = [f"{m} imports {t}" for m, edges in imports().items() if area(m) not in ("cli", "__main__")
           for t, _ in edges if area(t) == "cli"]
    assert not bad, "\n".join(bad)


def test_no_import_cycles_but_registry_loaders():
    graph = {m: {t for t, f in edges if f not in REGISTRY_LOADERS and t in _modules()} for m, edges in
             imports().items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _modules() -> set[str]:
    return {module_name(p) for p in SRC.rglob("*.py")}


def test_argparse_only_in_cli():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        if module_name(path).split(".")[1:2] == ["cli"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                bad.append(f"{module_name(path)}:{node.lineno}")
    assert not bad, "argparse outside cli/: " + ", ".join(bad)
