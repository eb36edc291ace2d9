"""The package's architecture, checked from its source: the wings, their import direction, no import circle, tools
that are commands and nothing else, one definition of each shared name. See docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modeling_mtqnet.cli import COMMANDS
from modeling_mtqnet.model.modeling_mtqnet import CODE_FILES

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "modeling_mtqnet"
# Lower layers never import higher ones; a wing may import itself, but never in a circle (test_no_import_circles).
# `__init__` is the package root: it registers the Auto classes and the pipeline task from `model/`, `pretrained/`
# and `vocabulary.py`, and whatever imports `modeling_mtqnet` (`from .. import X` too) imports it. (docs/ARCHITECTURE.md
# draws the same picture.)
LAYERS = {
    "model": 0,
    "vocabulary": 1, "distributed": 1, "threads": 1, "pretrained": 1,
    "tables": 2, "__init__": 2,
    "corpus": 3, "training": 3,
    "labels": 4,
    "sharing": 5, "scoring": 5,
    "builds": 6,
    "tools": 7,
    "cli": 8, "__main__": 9,
}
TOP_LEVEL_SCRIPTS = {"train", "push_to_hub", "model_card", "tests", "benchmarks", "studies"}


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "metrics" not in path.parts)


def wing_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """`modeling_mtqnet.tools.score` for tools/score.py; a package's `__init__.py` is the package."""
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, package: Path = PACKAGE) -> bool:
    """Whether the dotted `name` is a module or package of the package (else an attribute of one)."""
    folder = package.parent.joinpath(*name.split("."))
    return folder.with_suffix(".py").is_file() or (folder / "__init__.py").is_file()


def imported_modules(path: Path, package: Path = PACKAGE) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in the file, at any depth (inside functions too), relative ones
    resolved against the package. `from X import y` names the module X.y when there is one, else X itself: so
    `from .. import PIPELINE_TASK` is an import of the package root, `modeling_mtqnet`."""
    within = [package.name, *path.relative_to(package).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(within[: len(within) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if is_module(submodule, package) else base, node.lineno))
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
            if LAYERS[target] >= LAYERS[wing]:
                offenders.append(f"{path.relative_to(PACKAGE)}:{line} ({wing}) imports {name} ({target})")
    assert not offenders, "\n".join(offenders)


def test_a_wing_that_imports_the_package_root_is_checked_like_any_import(tmp_path):
    """`from .. import X` reads the package's `__init__.py`: a wing below it (`pretrained`, here) must not."""
    package = tmp_path / "modeling_mtqnet"
    (package / "pretrained").mkdir(parents=True)
    (package / "__init__.py").write_text("from .pretrained import SHIPPED\nPIPELINE_TASK = 'x'\n")
    (package / "pretrained" / "__init__.py").write_text("from .. import PIPELINE_TASK\nfrom .. import pretrained\n")
    imports = imported_modules(package / "pretrained" / "__init__.py", package)
    assert imports == [("modeling_mtqnet", 1), ("modeling_mtqnet.pretrained", 2)]
    assert LAYERS[target_wing(imports[0][0])] > LAYERS["pretrained"]


# ----------------------------------------------------------------------------------------------------------------
# Import circles
# ----------------------------------------------------------------------------------------------------------------


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports, at module level or inside a function (an import hidden in a
    function still ties the two modules together)."""
    graph = {}
    for path in sorted(package.rglob("*.py")):
        if "metrics" in path.relative_to(package).parts:
            continue
        edges = set()
        for name, _ in imported_modules(path, package):
            if name.split(".")[0] != package.name:
                continue
            while not is_module(name, package):  # `import modeling_mtqnet.x.y` where y is an attribute
                name = name.rsplit(".", 1)[0]
            edges.add(name)
        graph[module_name(path, package)] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (`[a, b, ..., a]`), or None when it has none (depth-first search)."""
    visiting: list[str] = []
    state: dict[str, str] = {}  # module -> "open" (on the current path) or "done"

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return visiting[visiting.index(imported):] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        visiting.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    circle = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(circle) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no circle


def test_the_graph_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "modeling_mtqnet"
    (package / "tools").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tools" / "__init__.py").write_text("")
    (package / "tools" / "one.py").write_text("def f():\n    from .two import g\n")
    (package / "tools" / "two.py").write_text("from . import one\n")
    graph = import_graph(package)
    assert graph["modeling_mtqnet.tools.one"] == {"modeling_mtqnet.tools.two"}
    assert find_cycle(graph) == ["modeling_mtqnet.tools.one", "modeling_mtqnet.tools.two", "modeling_mtqnet.tools.one"]


def test_no_import_circles():
    """Inside a wing and between wings, module-level and function-level imports alike."""
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


# ----------------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------------

TOOLS = sorted(module_name(path) for path in (PACKAGE / "tools").glob("*.py") if path.stem != "__init__")


def test_every_module_in_tools_is_a_command():
    """tools/ holds `mtqnet` commands, and only them: what two commands share lives in a wing below (builds/,
    scoring/, labels/, sharing/)."""
    commands = {module for module, _ in COMMANDS.values()}
    assert [module for module in TOOLS if module not in commands] == []


def test_no_module_imports_a_command_of_tools():
    """A command is not a library: `cli` runs them by name, nothing imports one."""
    offenders = [f"{path.relative_to(PACKAGE)}:{line} imports {name}" for path in modules()
                 for name, line in imported_modules(path)
                 if any(name == tool or name.startswith(tool + ".") for tool in TOOLS)]
    assert not offenders, "\n".join(offenders)


def test_benchmarks_and_studies_run_commands_of_tools_and_use_nothing_else_of_them():
    offenders = []
    for path in sorted([*(REPO / "benchmarks").glob("*.py"), *(REPO / "studies").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module in TOOLS:
                offenders += [f"{path.name}:{node.lineno} imports {alias.name} from {node.module}"
                              for alias in node.names if alias.name != "main"]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [f"{node.module}.{alias.name}" for alias in node.names]
                offenders += [f"{path.name}:{node.lineno} imports {name}" for name in names if name in TOOLS]
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
    "PIPELINE_TASK", "STAND_IN_COLUMNS", "stand_in_mos", "add_stand_in_labels", "load_model", "DTYPES",
    "SignalSketch", "plot_frame_curve", "factor_table", "TeacherRecipe", "StudentRecipe", "StageLedger",
    "KEEP_BEST_VALIDATION_LCC", "training_arguments",
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
