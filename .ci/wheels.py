"""Install-from-wheels check: what a user gets from `pip install`, not the workspace.

    python3 .ci/wheels.py

1. `uv build --all-packages`: each sdist, and each wheel built from its sdist (so an sdist
   that lacks a file its wheel needs fails here);
2. each sdist and wheel holds its own distribution's files and the LICENSE, nothing else;
3. a clean virtual environment (`python -m venv`, pip inside) per adapter gets the core's
   wheel and that adapter's, their dependencies resolved from the index (by uv, minutes
   faster than pip on a 2-core machine, the same latest releases), and pip's own `pip check`
   finds nothing broken; then one more gets all four, with what the examples need;
4. `__version__` of every package is the version of its distribution;
5. the documentation's examples (tests/test_docs.py) run against the installed packages,
   with the workspace's sources out of reach.
Standard library only: it runs under whatever python3 starts .ci/run.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "excepthub": "excepthub",
    "excepthub-fastapi": "excepthub_fastapi",
    "excepthub-faststream": "excepthub_faststream",
    "excepthub-fastmcp": "excepthub_fastmcp",
}
# what the examples need besides the four distributions (the README's install section says so)
EXAMPLE_EXTRAS = {
    "excepthub": "[testing,otel,sentry]",
    "excepthub-faststream": "[redis,rabbit,nats]",
}
EXAMPLE_TOOLS = ["httpx", "pytest", "pytest-timeout", "opentelemetry-sdk", "schemathesis"]
SDIST_FILES = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE", ".gitignore"}


def run(*command: str, cwd: Path = ROOT) -> str:
    """Run a command, echo it, fail the check with its output if it fails."""
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"wheels: failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def check_contents(dist: Path, name: str, package: str) -> None:
    """The sdist and the wheel of `name` hold its own files and its LICENSE only."""
    stem = name.replace("-", "_")
    (sdist,) = dist.glob(f"{stem}-*.tar.gz")
    (wheel,) = dist.glob(f"{stem}-*.whl")
    with tarfile.open(sdist) as archive:
        members = [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()]
    foreign = [m for m in members if m not in SDIST_FILES and not m.startswith(f"src/{package}/")]
    extra_core = ["CHANGELOG.md", "src/_excepthub_pytestplugin.py"] if name == "excepthub" else []
    foreign = [m for m in foreign if m not in extra_core]
    if foreign or "LICENSE" not in members:
        sys.exit(f"wheels: {sdist.name} holds {foreign or 'no LICENSE'}")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    foreign = [n for n in names if not n.startswith((f"{package}/", f"{stem}-"))]
    foreign = [n for n in foreign if name != "excepthub" or n != "_excepthub_pytestplugin.py"]
    if foreign or not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        sys.exit(f"wheels: {wheel.name} holds {foreign or 'no LICENSE'}")
    print(f"{sdist.name}: {len(members)} files; {wheel.name}: {len(names)} files", flush=True)


def wheel(dist: Path, name: str, extras: str = "") -> str:
    """The path of `name`'s wheel in `dist`, with `extras` ("[redis]") for pip."""
    return f"{next(dist.glob(name.replace('-', '_') + '-*.whl'))}{extras}"


def install(venv: Path, requirements: list[str], packages: dict[str, str], cwd: Path) -> str:
    """A clean venv with `requirements`; `pip check`, then each of `packages` imported from
    site-packages with its distribution's `__version__`. Returns the venv's interpreter."""
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    run(sys.executable, "-m", "uv", "pip", "install", "--python", python, *requirements)
    print(run(python, "-m", "pip", "check").strip(), flush=True)
    versions = run(
        python,
        "-c",
        "import importlib.metadata as m\n"
        f"for name, package in {packages!r}.items():\n"
        "    module = __import__(package)\n"
        "    assert module.__version__ == m.version(name), (name, module.__version__)\n"
        "    assert 'site-packages' in module.__file__, module.__file__\n"
        "    print(name, module.__version__, 'from', module.__file__)\n",
        cwd=cwd,
    )
    print(versions.strip(), flush=True)
    return python


def main() -> int:
    """Build, inspect, install each adapter alone, then all four and run the examples."""
    with tempfile.TemporaryDirectory(prefix="excepthub-wheels-") as scratch:
        dist, elsewhere = Path(scratch, "dist"), Path(scratch, "run")
        elsewhere.mkdir()  # a folder outside the tree: only installed packages can be imported
        run(sys.executable, "-m", "uv", "build", "--all-packages", "--out-dir", str(dist))
        for name, package in PACKAGES.items():
            check_contents(dist, name, package)

        for name, package in list(PACKAGES.items())[1:]:  # each adapter alone, as a user has it
            alone = {"excepthub": "excepthub", name: package}
            requirements = [wheel(dist, "excepthub"), wheel(dist, name)]
            install(Path(scratch, name), requirements, alone, elsewhere)

        wheels = [wheel(dist, name, EXAMPLE_EXTRAS.get(name, "")) for name in PACKAGES]
        python = install(Path(scratch, "all"), [*wheels, *EXAMPLE_TOOLS], PACKAGES, elsewhere)
        # the tests folder alone: tests/test_docs.py reads README.md and docs/ of the tree
        output = run(
            python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
            "-c", str(ROOT / "pyproject.toml"), "--import-mode=importlib",
            str(ROOT / "tests" / "test_docs.py"),
            cwd=elsewhere,
        )  # fmt: skip
        print(output.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
