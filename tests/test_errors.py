"""Where errors live: every exception class of a package is defined in its
``errors.py`` tree (private helpers excepted), and there is one ``NotRunningError``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import errors as actor_errors
from gateway import errors as gateway_errors

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "core", "natsauth", "runtime", "modelcall", "artifacts", "analytics",
            "actors", "gateway", "api", "offline_model", "switchboard")


def _exception_classes(path: Path) -> list[str]:
    """Public classes in ``path`` whose bases name an error or exception."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
            continue
        bases = [ast.unparse(b) for b in node.bases]
        if any(b.endswith(("Error", "Exception")) for b in bases):
            found.append(node.name)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exception_is_defined_in_its_package_errors_module(package: str) -> None:
    root = REPO / package
    if not root.is_dir():
        pytest.skip(f"no {package}/ package")
    outside = {
        str(path.relative_to(REPO)): names
        for path in sorted(root.rglob("*.py"))
        if path.name != "errors.py" and (names := _exception_classes(path))
    }
    assert outside == {}, f"exception classes outside {package}/errors.py: {outside}"


def test_the_error_modules_define_what_they_document() -> None:
    for module in (actor_errors, gateway_errors):
        doc = module.__doc__ or ""
        for name in _exception_classes(Path(module.__file__ or "")):
            assert name in doc, f"{module.__name__}.{name} is missing from its hierarchy"


def test_there_is_one_not_running_error() -> None:
    assert gateway_errors.NotRunningError is actor_errors.NotRunningError
    assert issubclass(actor_errors.NotRunningError, actor_errors.BrokerError)
    assert str(actor_errors.NotRunningError()) == "Switchboard is not running"
