"""The package's architecture, checked from its source: the wings, their import direction, one definition of each
shared name. See docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modeling_mtqnet.model.modeling_mtqnet import CODE_FILES

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_mtqnet"
# Lower layers never import higher ones; a wing may import itself. (docs/ARCHITECTURE.md draws the same picture.)
LAYERS = {
    "model": 0,
    "vocabulary": 1, "distributed": 1, "threads": 1, "pretrained": 1,
    "tables": 2,
    "corpus": 3, "training": 3,
    "labels": 4,
    "sharing": 5,
    "tools": 6,
    "cli": 7, "__main__": 8, "__init__": 8,
}
TOP_LEVEL_SCRIPTS = {"train", "push_to_hub", "model_card", "tests", "benchmarks", "studies"}


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "metrics" not in path.parts)


def wing_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in the file, relative ones resolved against the package."""
    package = ["modeling_mtqnet", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` / `from .. import x` may name submodules
                found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names] if not node.module else \
                    [(name, node.lineno)]
            else:
                found.append((node.module or "", node.lineno))
    return found


def target_wing(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "modeling_mtqnet":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def test_model_wing_holds_exactly_the_files_a_saved_folder_carries():
    files = sorted(path.name for path in (PACKAGE / "model").glob("*.py"))
    assert files == sorted([*CODE_FILES, "__init__.py"])


@pytest.mark.parametrize("name", CODE_FILES)
def test_model_files_import_nothing_outside_the_model_wing(name):
    path = PACKAGE / "model" / name
    for imported, line in imported_modules(path):
        wing = target_wing(imported)
        assert wing in (None, "model"), f"{path.name}:{line} imports {imported}"
        if wing is None:
            assert imported.split(".")[0] not in TOP_LEVEL_SCRIPTS, f"{path.name}:{line} imports {imported}"
    # A saved folder holds the code files side by side: only relative imports of each other may appear.
    tree = ast.parse(path.read_text())
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert all(node.level == 1 and f"{node.module}.py" in CODE_FILES for node in relative)


def test_every_module_belongs_to_a_known_wing():
    unknown = {wing_of(path) for path in modules()} - set(LAYERS)
    assert not unknown, f"add {unknown} to LAYERS here and to docs/ARCHITECTURE.md"


def test_no_module_imports_a_top_level_script():
    offenders = [f"{path.relative_to(PACKAGE)}:{line} imports {name}" for path in modules()
                 for name, line in imported_modules(path) if name.split(".")[0] in TOP_LEVEL_SCRIPTS]
    assert not offenders


def test_wings_import_downward_only():
    offenders = []
    for path in modules():
        wing = wing_of(path)
        for name, line in imported_modules(path):
            target = target_wing(name)
            if target is None or target == wing or target not in LAYERS:
                continue
            if LAYERS[target] >= LAYERS[wing] and wing != "__init__":
                offenders.append(f"{path.relative_to(PACKAGE)}:{line} ({wing}) imports {name} ({target})")
    assert not offenders, "\n".join(offenders)


def top_level_definitions(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("name", [
    "PRIMARY_TARGETS", "AUXILIARY_TARGETS", "METHODS", "PSEUDO_LABEL_METHODS", "ERROR_COLUMN", "AUDIO_EXTENSIONS",
    "TABLE_SUFFIXES", "MANIFEST_SUFFIXES", "DISPLAY_NAMES", "TARGET_DISPLAY_NAMES", "display_name", "read_table",
    "write_table", "read_jsonl", "to_float", "_to_float", "CODE_FILES", "decodable_audio", "_decodable",
])
def test_shared_names_are_defined_once(name):
    owners = [str(path.relative_to(PACKAGE)) for path in modules() if name in top_level_definitions(path)]
    assert len(owners) <= 1, f"{name} is defined in {owners}"


def test_no_module_uses_another_modules_private_names():
    offenders = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("modeling_mtqnet")):
                offenders += [f"{path.relative_to(PACKAGE)} imports {alias.name}" for alias in node.names
                              if alias.name.startswith("_") and alias.name != "__version__"]
    assert not offenders


@pytest.mark.parametrize("retired", ["annotate_error", "intrusive_error"])
def test_one_error_column_name(retired):
    assert not [path for path in modules() if f'"{retired}"' in path.read_text()]
