"""The import contract of the package: its floors (README, Layout), read from the real import graph
(grimp: every import, at module level or inside a function), and two rules checked on the source:
outside ``promptseg/ops`` code imports ``promptseg.ops`` only, and no room imports another room's
underscore name.

A room is a top-level module or package of ``promptseg`` (``promptseg.amg``, ``promptseg.predictor``);
``promptseg`` itself is the package root. Imports inside a room are free. ``promptseg.sam2`` holds three
rooms (:data:`SUBROOMS`): its API (predictor, generator, official re-exports), its model loading
(``sam2.build``: build_sam, configs, checkpoint, model_types) and its network (``sam2.modeling``), so
that the seams can serve SAM 2 models and the commands can build them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import promptseg.ops

PACKAGE_DIR = Path(promptseg.ops.__file__).resolve().parents[1]
ROOT = "promptseg"

# Top to bottom: a room imports rooms on lower floors, and rooms of its own floor unless that floor is
# independent (its rooms import none of each other). The README's Layout states the same list.
FLOORS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("entry points and the official module paths",
     (ROOT, "__main__", "cli", "utils", "build_sam", "automatic_mask_generator"), False),
    ("API rooms", ("annotate", "distributed", "evaluate", "export", "find", "sam2", "train", "zeroshot"), True),
    ("the mask generator and the datasets", ("automatic", "data"), True),
    ("the predictor and the generator's blocks", ("predictor", "amg"), True),
    ("the seams and text", ("decoders", "encoders", "text"), True),
    ("model loading", ("bundled", "build", "sam2.build"), False),
    ("the SAM 2 network", ("sam2.modeling",), False),
    ("the model", ("modeling", "masks", "checkpoint"), True),
    ("the kernel boundary and the token rule", ("ops", "prompts"), True),
    ("the bottom", ("io", "errors", "configs", "settings", "drawing", "version", "allocator"), False),
)
FLOOR_OF = {room: level for level, (_, rooms, _) in enumerate(FLOORS) for room in rooms}


SUBROOMS = {
    "promptseg.sam2.modeling": "sam2.modeling",
    "promptseg.sam2.build_sam": "sam2.build",
    "promptseg.sam2.configs": "sam2.build",
    "promptseg.sam2.checkpoint": "sam2.build",
    "promptseg.sam2.model_types": "sam2.build",
}
"""Modules (and packages) of a room that are rooms of their own."""


def room_of(module: str) -> str:
    """``promptseg.amg.rle`` -> ``amg``; ``promptseg`` -> ``promptseg``; ``promptseg.sam2.modeling.sam``
    -> ``sam2.modeling`` (:data:`SUBROOMS`)."""
    for prefix, room in SUBROOMS.items():
        if module == prefix or module.startswith(prefix + "."):
            return room
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def package_modules() -> list[tuple[str, Path]]:
    """(dotted name, file) of every module under promptseg/."""
    modules = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        modules.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return modules


def absolute_imports(path: Path):
    """(line, imported module, imported names or None) of every absolute import in a file."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None


@pytest.fixture(scope="module")
def graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph(ROOT, cache_dir=None)


def test_every_room_has_a_floor(graph):
    rooms = {room_of(module) for module in graph.modules}
    assert rooms - set(FLOOR_OF) == set(), "rooms the contract does not place: add them to FLOORS and the README"
    assert set(FLOOR_OF) - rooms == set(), "FLOORS names rooms that no longer exist"


def test_imports_run_down_the_floors(graph):
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            source, target = room_of(importer), room_of(imported)
            if source == target:
                continue
            upward = FLOOR_OF[source] > FLOOR_OF[target]  # FLOORS runs top to bottom
            sideways = FLOOR_OF[source] == FLOOR_OF[target] and FLOORS[FLOOR_OF[source]][2]
            if upward or sideways:
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    found.append(
                        f"{importer}:{detail['line_number']} ({FLOORS[FLOOR_OF[source]][0]}) imports {imported} "
                        f"({FLOORS[FLOOR_OF[target]][0]}): {detail['line_contents']}"
                    )
    assert not found, "imports against the floors:\n" + "\n".join(found)


def test_outside_ops_code_imports_the_ops_package_only():
    public = set(promptseg.ops.__all__)
    found = []
    for module, path in package_modules():
        if room_of(module) == "ops":
            continue
        for line, imported, names in absolute_imports(path):
            if imported.startswith("promptseg.ops."):
                found.append(f"{module}:{line} imports {imported}")
            elif imported == "promptseg.ops" and names is not None:
                found += [f"{module}:{line} imports promptseg.ops.{name}" for name in names if name not in public]
    assert not found, "a submodule or private name of promptseg.ops imported from outside it:\n" + "\n".join(found)


def test_no_room_imports_an_underscore_name_of_another():
    found = []
    for module, path in package_modules():
        for line, imported, names in absolute_imports(path):
            if not imported.startswith(f"{ROOT}.") or room_of(imported) == room_of(module):
                continue
            private = [part for part in imported.split(".") if part.startswith("_") and not part.startswith("__")]
            private += [name for name in names or () if name.startswith("_") and not name.startswith("__")]
            found += [f"{module}:{line} imports {name} from {imported}" for name in private]
    assert not found, "underscore names reached from another room:\n" + "\n".join(found)
