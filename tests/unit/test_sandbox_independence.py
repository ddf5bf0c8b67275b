"""The simulator is independent of the gateway: no module under ``voxgate/sandbox/``
imports gateway code, so its input checks are its own (issue 16, item 6)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

#: The only voxgate package the simulator may import: itself.
ALLOWED_PREFIX = "voxgate.sandbox"


def sandbox_dir() -> Path:
    """Found without importing the package (a broken import must not hide a finding)."""
    spec = importlib.util.find_spec("voxgate")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "sandbox"


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.append("." * node.level + (node.module or ""))
    return names


def test_no_sandbox_module_imports_gateway_code() -> None:
    """Every module under voxgate/sandbox/ imports only the standard library,
    third-party packages and voxgate.sandbox itself: its checks are its own."""
    offenders = []
    files = sorted(sandbox_dir().glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in imported_modules(path):
            gateway = name == "voxgate" or (
                name.startswith("voxgate.") and not name.startswith(ALLOWED_PREFIX)
            )
            if gateway or name.startswith(".."):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []
