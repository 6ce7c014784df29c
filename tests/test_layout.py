"""The package layout: imports run one way (downward), modules stay small, the root holds only the
entry points and what every layer shares, and no private name crosses a module boundary."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_inspector"
# bottom to top: a module may import from its own layer or a lower one (docs/architecture.md)
LAYERS = ["errors", "config", "data", "model", "inspection", "runtime", "evaluation", "cameras", "calibration",
          "service", "verbs", "cli", "__main__"]
ROOT_MODULES = {"__init__.py", "__main__.py", "cli.py", "errors.py"}
MAX_LINES = 300


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(dotted: str) -> int | None:
    """The layer of an edge_inspector module name; None for the package itself (its version)."""
    parts = dotted.split(".")
    if parts[0] != "edge_inspector":
        return None
    if len(parts) == 1:
        return -1
    return LAYERS.index(parts[1])


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) for every import in the file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
    return out


def own_layer(path: Path) -> int:
    rel = path.relative_to(PACKAGE)
    name = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    return -1 if name == "__init__" else LAYERS.index(name)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward(path):
    mine = own_layer(path)
    upward = []
    for line, module, names in imports(path):
        theirs = layer_of(module)
        if theirs is None:
            continue
        if module == "edge_inspector":  # `from edge_inspector import x`: x may be a subpackage
            theirs = max([-1] + [LAYERS.index(n) for n in names if n in LAYERS])
        if theirs > mine:
            upward.append(f"line {line}: {module}")
    assert not upward, f"{path.name} ({LAYERS[mine] if mine >= 0 else 'root'}) imports from above: {upward}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported(path):
    private = [(line, n) for line, module, names in imports(path) if module.startswith("edge_inspector")
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, f"{path.name} imports private names: {private}"


def test_modules_stay_small():
    big = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_package_root_holds_only_entry_points_and_shared_modules():
    loose = {p.name for p in PACKAGE.glob("*.py")} - ROOT_MODULES
    assert not loose, f"loose modules at the package root: {sorted(loose)}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS) - {p.removesuffix(".py") for p in ROOT_MODULES} - {"__init__"}


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # the check above must be able to fail: a data module importing the service is flagged
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from edge_inspector.service.pipeline import LineService\n")
    (line, module, _), = imports(bad)
    assert line == 2 and layer_of(module) > LAYERS.index("data")


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_layout_docs_name_every_package_folder(doc):
    text = (PACKAGE.parent / doc).read_text()
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    missing = [f for f in folders if f"{f}/" not in text]
    assert not missing, f"{doc} does not describe {missing}"
