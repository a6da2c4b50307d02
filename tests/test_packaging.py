"""The four distributions as a user installs them: one version, a core they agree on, extras
that exist, a LICENSE each, docstrings that point at nothing the installed package lacks."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import excepthub

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ["fastapi", "faststream", "fastmcp"]
FRAMEWORK = {"fastapi": "fastapi", "faststream": "faststream", "fastmcp": "fastmcp"}


def _project(adapter: str) -> dict[str, Any]:
    pyproject = ROOT / "adapters" / adapter / "pyproject.toml"
    project: dict[str, Any] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return project


def _requirement(adapter: str, name: str) -> Requirement:
    found = [Requirement(r) for r in _project(adapter)["dependencies"]]
    (requirement,) = [r for r in found if r.name == name]
    return requirement


def test_the_core_has_a_version_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", excepthub.__version__)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_has_the_version_of_the_core(adapter: str) -> None:
    module = importlib.import_module(f"excepthub_{adapter}")
    assert module.__version__ == excepthub.__version__


@pytest.mark.parametrize(
    "distribution", ["excepthub", *(f"excepthub-{adapter}" for adapter in ADAPTERS)]
)
def test_the_installed_metadata_has_the_one_version(distribution: str) -> None:
    # stale after a version bump until `uv sync` reinstalls the workspace
    assert importlib.metadata.version(distribution) == excepthub.__version__


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_requires_a_core_range_that_holds_this_core(adapter: str) -> None:
    specifier = _requirement(adapter, "excepthub").specifier
    assert specifier.contains(excepthub.__version__)
    major, minor, _ = excepthub.__version__.split(".")
    next_minor = f"{major}.{int(minor) + 1}.0"
    assert not specifier.contains(next_minor), "0.x: the next minor release may break adapters"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_requires_its_framework_with_a_floor_and_no_cap(adapter: str) -> None:
    specifier = _requirement(adapter, FRAMEWORK[adapter]).specifier
    assert [spec.operator for spec in specifier] == [">="]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_extra_is_its_framework_extra(adapter: str) -> None:
    framework = FRAMEWORK[adapter]
    offered = set(importlib.metadata.metadata(framework).get_all("Provides-Extra") or [])
    for extra, requirements in _project(adapter)["optional-dependencies"].items():
        (requirement,) = [Requirement(r) for r in requirements]
        assert requirement.name == framework
        assert requirement.extras == {extra}
        assert extra in offered, f"{framework} offers no extra {extra!r}"


def test_faststream_brokers_are_extras_of_the_adapter() -> None:
    extras = _project("faststream")["optional-dependencies"]
    assert {"redis", "rabbit", "nats", "kafka", "confluent"} <= set(extras)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_ships_the_license_of_the_repository(adapter: str) -> None:
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert (ROOT / "adapters" / adapter / "LICENSE").read_text(encoding="utf-8") == license_text
    assert _project(adapter)["license"] == "MIT"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_has_a_readme_of_its_own(adapter: str) -> None:
    assert _project(adapter)["readme"] == "README.md"
    readme = (ROOT / "adapters" / adapter / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# excepthub-{adapter}\n")


@pytest.mark.parametrize("package", ["excepthub", *(f"excepthub_{a}" for a in ADAPTERS)])
def test_docstrings_point_at_no_repository_path(package: str) -> None:
    sources = Path(importlib.import_module(package).__file__ or "").parent.glob("*.py")
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert not re.search(r"\bdocs/\w+\.md\b", text), f"{source.name} names a docs/ path"
