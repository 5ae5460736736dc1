"""The package's layers, held from its own imports (ast): no cycles, ROS only in ros/, lower never imports higher.

The data path, top to bottom: geometry (eval and viz beside it) -> data -> model -> runtime -> service -> ros -> app, with
distill and export beside runtime as leaves only app imports (docs/architecture.md). A folder may import the folders listed for it
in ALLOWED and the flat top-level modules; nothing else.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fsmde_ros"
TOP_LEVEL = {"__init__", "__main__", "errors", "paths"}  # flat modules every layer may use
ALLOWED = {  # folder -> the folders it may import (written once, here)
    "geometry": set(),
    "eval": {"geometry"},
    "viz": set(),
    "data": {"geometry", "eval", "viz"},
    "model": {"geometry"},
    "distill": {"geometry", "eval", "viz", "data", "model"},
    "export": {"geometry", "data", "model"},
    "runtime": {"geometry", "model"},
    "service": {"geometry", "eval", "model", "runtime"},
    "ros": {"geometry", "data", "model", "runtime", "service"},
    "app": {"geometry", "eval", "viz", "data", "model", "distill", "export", "runtime", "service", "ros"},
}
ROS_PACKAGES = {"rclpy", "rosbags", "rosidl_runtime_py", "rcl_interfaces", "builtin_interfaces", "std_msgs",
                "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "tf2_msgs", "tf2_ros", "rosgraph_msgs",
                "message_filters", "cv_bridge", "launch", "launch_ros"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80  # a function longer than a screen is split where a reader gains


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved), at any depth in the file."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def package_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports (only names that are modules of the package)."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path, package) if m in modules and m != name}
    return graph


def folder_of(module: str) -> str:
    """'fsmde_ros.ros.node' -> 'ros'; a flat module -> its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def layering_violations(package: Path = PACKAGE) -> list[str]:
    """Everything the layering rules forbid, one line each (empty when the package keeps them)."""
    graph = package_graph(package)
    problems = []
    cycle = find_cycle(graph)
    if cycle:
        problems.append("module cycle: " + " -> ".join(cycle))
    folders: dict[str, set[str]] = {}
    for module, deps in graph.items():
        a = folder_of(module)
        for dep in deps:
            b = folder_of(dep)
            if a != b:
                folders.setdefault(a, set()).add(b)
            if a in ALLOWED and b not in TOP_LEVEL and b != a and b not in ALLOWED[a]:
                problems.append(f"{module} imports {dep}: {a}/ may import only {sorted(ALLOWED[a]) or 'nothing'}")
    flat = {folder_of(m) for m in graph if m.count(".") == 1 and not (package / folder_of(m)).is_dir()}
    if flat - TOP_LEVEL:
        problems.append(f"flat modules beyond {sorted(TOP_LEVEL)}: {sorted(flat - TOP_LEVEL)}")
    folder_cycle = find_cycle({f: {d for d in deps if d not in TOP_LEVEL} for f, deps in folders.items()})
    if folder_cycle:
        problems.append("folder cycle: " + " -> ".join(folder_cycle))
    for path in package.rglob("*.py"):
        module = module_name(path, package)
        ros = sorted({m.split(".")[0] for m in imports_of(path, package)} & ROS_PACKAGES)
        if ros and folder_of(module) != "ros":
            problems.append(f"{module} imports {', '.join(ros)}: ROS belongs in fsmde_ros/ros/")
    return problems


def test_the_package_keeps_its_layers():
    assert layering_violations() == []


def test_every_module_is_at_most_400_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_longer_than_a_screen():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long[f"{module_name(path)}.{node.name}"] = n
    assert long == {}


def test_the_layering_check_catches_a_cycle_an_upward_import_and_ros_outside_ros(tmp_path):
    """The check itself fails on the faults it exists for (a copy of the package with each planted)."""
    pkg = tmp_path / "fsmde_ros"
    for folder in ("geometry", "service", "ros"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "geometry" / "rig.py").write_text("from fsmde_ros.service.sync import x\n")  # upward
    (pkg / "service" / "sync.py").write_text("from fsmde_ros.geometry import rig\nimport rclpy\n")  # cycle + ROS
    (pkg / "ros" / "node.py").write_text("import rclpy\nfrom fsmde_ros.service import sync\n")  # fine
    (pkg / "helpers.py").write_text("")  # a fourth flat module
    found = "\n".join(layering_violations(pkg))
    assert "module cycle: fsmde_ros.geometry.rig -> fsmde_ros.service.sync -> fsmde_ros.geometry.rig" in found
    assert "fsmde_ros.geometry.rig imports fsmde_ros.service.sync: geometry/ may import only nothing" in found
    assert "fsmde_ros.service.sync imports rclpy: ROS belongs in fsmde_ros/ros/" in found
    assert "flat modules beyond" in found and "helpers" in found
    assert "fsmde_ros.ros.node" not in found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_tests_mirror_the_package(folder):
    """Each layer has its own test folder (tests/<folder>/), as the package has fsmde_ros/<folder>/."""
    assert (Path(__file__).resolve().parent / folder).is_dir()


def test_the_docs_name_every_module_and_folder_that_exists_and_no_other():
    """docs/architecture.md has one line per module; the README's Layout names every layer folder."""
    repo = PACKAGE.parent
    table = re.findall(r"^\| `([\w/]+\.py)` \|", (repo / "docs" / "architecture.md").read_text(), re.M)
    modules = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                     or p.parent.name == "runtime")  # runtime/__init__.py holds create_backend
    assert sorted(table) == modules
    layout = (repo / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert sorted(re.findall(r"^  (\w+)/ ", layout, re.M)) == folders
