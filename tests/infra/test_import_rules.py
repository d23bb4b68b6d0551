"""The package graph (docs/architecture.md, "Import rules"), checked by parsing every module's imports with ``ast``.

Top-level and nested imports both count: an import inside a function is still an arrow. A second check keeps
imports at the top of each file: only the optional heavy libraries may be imported inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "app")

# (importing package, forbidden target, why). A module matches a package when it is the package or inside it.
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("engine", "app", "the engine never knows the dashboard"),
    ("engine.data", "engine.methods", "datasets know no objective"),
    ("engine.data", "engine.train", "datasets know no trainer"),
    ("engine.augment", "engine.models", "augmentations know no network"),
    ("engine.augment", "engine.methods", "augmentations know no objective"),
    ("engine.augment", "engine.train", "augmentations know no trainer"),
    ("engine.methods", "engine.train", "objectives do not know the loop"),
    ("engine.methods", "engine.store", "objectives know no store"),
    ("engine.methods", "engine.eval", "objectives know no evaluation"),
    # The loss takes its DDP all-gather as an argument; process-group state belongs to the trainer.
    ("engine.methods", "engine.core.distributed", "objectives do not know the loop (gather is passed in)"),
    ("engine.methods", "torch.distributed", "objectives do not know the loop (gather is passed in)"),
    ("app", "engine.train", "the app reads runs through engine.lab / engine.store, it does not train"),
    ("app", "engine.study", "the app does not run studies"),
)

# Known arrows still being removed elsewhere, as (importing module, imported module). Shrink only; empty now
# that every rule holds (add an entry only with a comment saying which change removes it).
ALLOWED: frozenset[tuple[str, str]] = frozenset()


# Heavy libraries that are optional at run time: the only ones that may be imported inside a function.
OPTIONAL = frozenset({"umap", "faiss", "playwright", "matplotlib", "torchvision", "timm"})


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, nested)`` for every import of ``module``; ``from a import b`` yields ``a.b``
    when that is a module, else ``a``. Relative imports are resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        inner = id(node) in nested
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, inner) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub if sub in MODULES else base, node.lineno, inner))
    return out


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations() -> list[str]:
    found = []
    for module, path in MODULES.items():
        rel = path.relative_to(REPO)
        for target, line, _ in _imports(module, path):
            for src, dst, why in FORBIDDEN:
                if _within(module, src) and _within(target, dst) and (module, target) not in ALLOWED:
                    found.append(f"{rel}:{line}: {module} -> {target} ({src} must not import {dst}: {why})")
    return found


def test_no_forbidden_import_arrow() -> None:
    found = _violations()
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_allow_list_holds_only_live_arrows() -> None:
    """An allowed arrow that no longer exists must leave the list (so the list only shrinks)."""
    live = {(m, t) for m, p in MODULES.items() for t, _, _ in _imports(m, p)}
    stale = sorted(ALLOWED - live)
    assert not stale, f"remove these entries from ALLOWED, the imports are gone: {stale}"


def test_only_optional_libraries_are_imported_inside_functions() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line}: `import {target}` inside a function; move it to the top of the file"
        for module, path in MODULES.items()
        for target, line, nested in _imports(module, path)
        if nested and target.split(".")[0] not in OPTIONAL
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import engine.train.loop\n", [("engine.train.loop", 1, False)]),
        ("def f():\n    from engine import train\n", [("engine.train", 2, True)]),
        ("from engine.methods import build_method\n", [("engine.methods", 1, False)]),
        ("from .losses import nt_xent\n", [("engine.methods.losses", 1, False)]),
        ("class A:\n    def f(self):\n        import umap\n", [("umap", 3, True)]),
    ],
)
def test_import_parser(tmp_path: Path, source: str, expected: list) -> None:
    """The parser sees nested and relative imports (checked on a module placed inside engine.methods)."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert _imports("engine.methods.probe", path) == expected


def test_rules_see_the_whole_tree() -> None:
    """Guard against a silently empty scan: every stage package is found."""
    stages = {"core", "data", "augment", "models", "methods", "train", "store", "eval", "lab", "study"}
    assert {f"engine.{s}" for s in stages} <= set(MODULES)
    assert "app.main" in MODULES
