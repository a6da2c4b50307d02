"""Source distributions at the versions `uv.lock` pins: fetched once, checked, extracted.

The URL and the sha256 come from the lock file, so the suite runs exactly the framework release
the project is tested against, and nothing of theirs is committed here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tomllib
import urllib.request
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("EXCEPTHUB_CONFORMANCE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "excepthub-conformance"
)


class Locked(NamedTuple):
    """One distribution as `uv.lock` pins it."""

    name: str
    version: str
    url: str
    sha256: str


def locked(name: str) -> Locked:
    """The locked version of `name` and where its sdist is; `LookupError` if it is not locked."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for package in lock["package"]:
        if package["name"] == name and "sdist" in package:
            sdist = package["sdist"]
            algorithm, _, digest = sdist["hash"].partition(":")
            if algorithm != "sha256":
                raise LookupError(f"{name}: uv.lock gives a {algorithm} hash; sha256 expected")
            return Locked(name, package["version"], sdist["url"], digest)
    raise LookupError(f"{name} has no sdist in uv.lock")


def extracted(name: str) -> tuple[Locked, Path]:
    """`name`'s sdist at its locked version, extracted under the cache; its root folder.

    The distribution's own package folder is removed from the extraction: the tests must import
    the installed framework, the one excepthub's adapter imports, not a second copy beside it.
    """
    pin = locked(name)
    root = CACHE / f"{pin.name}-{pin.version}"
    if (root / ".complete").exists():
        return pin, root
    archive = CACHE / Path(pin.url).name
    if not archive.exists() or _sha256(archive) != pin.sha256:
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".part")
        with urllib.request.urlopen(pin.url, timeout=120) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out)
        if _sha256(partial) != pin.sha256:
            partial.unlink()
            raise RuntimeError(f"{pin.url}: sha256 differs from uv.lock's")
        partial.replace(archive)
    shutil.rmtree(root, ignore_errors=True)
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(CACHE, filter="data")
    (CACHE / top).rename(root)
    for package in (root / name.replace("-", "_"), root / "src" / name.replace("-", "_")):
        shutil.rmtree(package, ignore_errors=True)
    (root / ".complete").touch()
    return pin, root


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
