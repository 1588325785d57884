"""No module of inerf_ros uses another module's underscore names: what crosses a module boundary is
public API (named without the underscore) so that a rename inside a module cannot break another.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "inerf_ros"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").is_file() or \
        (PACKAGE.parent / relative / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def violations(source: str, module: str, is_package: bool = False, where: str = "") -> list[str]:
    """``where:line: name`` for each underscore name of another inerf_ros module that the code of
    ``module`` (``source``) imports or reads as an attribute of an imported module.
    """
    tree = ast.parse(source)
    modules_bound: dict[str, str] = {}  # local name -> inerf_ros module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            if source.split(".")[0] != "inerf_ros":
                continue
            for alias in node.names:
                if _is_module(f"{source}.{alias.name}"):
                    modules_bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif _private(alias.name) and source != module:
                    found.append(f"{where}:{node.lineno}: {source}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "inerf_ros" and alias.asname:
                    modules_bound[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name) \
                and node.value.id in modules_bound and modules_bound[node.value.id] != module:
            found.append(f"{where}:{node.lineno}: {modules_bound[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_underscore_names():
    found = [v for path in sorted(PACKAGE.rglob("*.py"))
             for v in violations(path.read_text(), _module_name(path), path.name == "__init__.py",
                                 str(path.relative_to(PACKAGE.parent)))]
    assert not found, "underscore names used across modules (make them public):\n" + "\n".join(found)


def test_the_scan_sees_an_underscore_import():
    """The scan itself must bite: imports and attribute reads of another module's underscore names are
    reported, a module's own and public names are not.
    """
    probe = ("from inerf_ros.camera import _HIDDEN\n"
             "from inerf_ros import frames\n"
             "frames._private_helper()\n"
             "import inerf_ros.lie as lie\n"
             "lie._hat\n"
             "from ..camera import Intrinsics, _relative\n"
             "from inerf_ros.nerf.metrics import _own\n"
             "from inerf_ros.camera import __all__\n")
    found = sorted(violations(probe, "inerf_ros.nerf.metrics", where="probe"))
    assert found == ["probe:1: inerf_ros.camera._HIDDEN", "probe:3: inerf_ros.frames._private_helper",
                     "probe:5: inerf_ros.lie._hat", "probe:6: inerf_ros.camera._relative"], found
