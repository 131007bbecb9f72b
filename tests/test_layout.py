"""The package's layout, read from its imports (``ast``): layers only import layers below them, no import cycle, and
imports at the top of each module (the CLI's one ``deferred`` is the only place that postpones them).

    python -m pytest tests/test_layout.py -q

The layers, bottom to top (sd_course/__init__.py says what each holds):
core < train < {inversion, pixel} < latent, gan < kinds < evaluate < publish < app
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sd_course"
# Each layer may import its own modules and those of lower layers. pixel and inversion are independent course parts;
# latent (Part 3) builds on pixel's diffusion objective and sampling; gan stands beside them.
LAYERS = {
    "core": 0,
    "train": 1,
    "inversion": 2,
    "pixel": 2,
    "latent": 3,
    "gan": 3,
    "kinds": 4,
    "evaluate": 5,
    "publish": 6,
    "app": 7,
}


def layer_of(module: str) -> str:
    """sd_course.pixel.pipeline -> "pixel"; the package root (``sd_course``: its version) is below everything."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        found[name] = path
    return found


def package_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported sd_course module, line, inside a function?) of every import of the package in ``path``."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    known = modules()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from sd_course.core import images` imports the module sd_course.core.images
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names]
        else:
            continue
        local, parent = False, parents.get(node)
        while parent is not None:
            local = local or isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
            parent = parents.get(parent)
        found += [(t, node.lineno, local) for t in targets if t == "sd_course" or t.startswith("sd_course.")]
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in package_imports(path)} for name, path in modules().items()}


def test_every_module_belongs_to_a_layer():
    unknown = sorted(name for name in modules() if layer_of(name) not in LAYERS and name not in
                     ("sd_course", "sd_course.__main__"))
    assert not unknown, f"modules outside the layers {list(LAYERS)}: {unknown}; add them to a layer"


def test_no_import_runs_up_a_layer():
    upward = []
    for name, path in modules().items():
        source = layer_of(name)
        for target, line, _ in package_imports(path):
            if target == "sd_course" or source == "root" and name == "sd_course.__main__":
                continue
            if LAYERS.get(layer_of(target), -1) > LAYERS.get(source, 99) or (
                    LAYERS.get(layer_of(target)) == LAYERS.get(source) and layer_of(target) != source):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({source}) imports {target}")
    assert not upward, "imports that run up (or across) a layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = import_graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_of_the_package_are_at_the_top_of_each_module():
    local = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
             for name, path in modules().items() for target, line, inside in package_imports(path) if inside]
    assert not local, ("function-local imports of the package (move them to the top; only sd_course/app/cli.py "
                       "defers, through its `deferred`):\n" + "\n".join(local))


def test_the_cli_defers_in_one_place_and_answers_help_without_torch():
    """`sd-course --help` must not import torch: the CLI's top imports are the light core modules only."""
    cli = PACKAGE / "app" / "cli.py"
    top = {target for target, _, inside in package_imports(cli) if not inside}
    assert top <= {"sd_course.core.errors", "sd_course.core.options"}, top
    source = cli.read_text()
    assert source.count("importlib.import_module(") == 1
    for light in ("sd_course.core.errors", "sd_course.core.options"):
        for target, _, _ in package_imports(PACKAGE.joinpath(*light.split(".")[1:]).with_suffix(".py")):
            assert target in ("sd_course.core.errors", "sd_course.core.options"), (light, target)


@pytest.mark.parametrize("layer", [name for name in LAYERS if name != "kinds"])
def test_each_layer_says_what_it_is(layer):
    init = PACKAGE / layer / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc) > 80, f"{init} needs a docstring: what the layer holds and the order to read it in"


def test_a_model_kind_is_its_folder_plus_one_registry_entry():
    """Only the registry names every kind; each kind's description lives in the folder of its course part."""
    from sd_course import kinds

    for kind in kinds.KINDS:
        module = kind.recognise.__module__
        assert layer_of(module) in ("pixel", "latent", "gan"), (kind.name, module)
    text = (PACKAGE / "kinds.py").read_text()
    assert all(f" {k.name.upper().replace('-', '_')}" in text for k in kinds.KINDS)
