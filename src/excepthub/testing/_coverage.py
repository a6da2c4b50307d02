"""Coverage of handlers: the exception classes of a package no handler takes, and the handlers
that never run."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

from .._defaults import Defaults
from .._outcome import Resolution, reraise
from .._registry import ExceptionMiddleware
from ._reference import reference_resolve

__all__ = ["Coverage", "coverage", "exception_classes_of"]


@dataclass(frozen=True)
class Coverage:
    """What `coverage(...)` found, as data to assert on.

    `unhandled`: the exception classes defined in the packages walked that no handler takes
    (nothing registered for them or a base class, or only a pass-through). `shadowed`: the
    side-effect handlers that never run for their class, each with the fallback handler that
    takes its errors first (`ExceptionMiddleware.shadowed`). `classes`: every class walked.
    """

    classes: tuple[type[Exception], ...]
    unhandled: tuple[type[Exception], ...]
    shadowed: tuple[tuple[Resolution, Resolution], ...]

    @property
    def complete(self) -> bool:
        """Whether every class walked is taken and every handler can run."""
        return not self.unhandled and not self.shadowed


def coverage(
    registry: ExceptionMiddleware,
    *packages: ModuleType | str,
    ignore: Iterable[type[Exception]] = (),
    defaults: Defaults | None = None,
) -> Coverage:
    """Which exception classes defined in `packages` no handler of `registry` takes, and which
    of its side-effect handlers never run.

    Each package (a module or its dotted name) is walked with its submodules, importing them;
    a class counts where it is defined, not where it is imported. Registrations for a class in
    `ignore` do not count as taking its errors (a catch-all such as `Exception`, which would
    take everything). `defaults` counts a framework's own handlers too, as its adapter does.

    ```python
    def test_every_shop_error_has_a_handler():
        report = coverage(exc, "shop", ignore=[Exception])
        assert report.unhandled == () and report.shadowed == ()  # or: assert report.complete
    ```
    """
    if not isinstance(registry, ExceptionMiddleware):
        raise TypeError(f"coverage() takes an excepthub.ExceptionMiddleware, got {registry!r}")
    if not packages:
        raise TypeError("coverage() needs the packages to walk: coverage(exc, 'shop') ")
    ignored = tuple(ignore)
    classes = exception_classes_of(*packages)
    unhandled = tuple(cls for cls in classes if not _taken(registry, cls, ignored, defaults))
    shadowed = tuple(registry.shadowed(defaults=defaults))
    return Coverage(classes, unhandled, shadowed)


def exception_classes_of(*packages: ModuleType | str) -> tuple[type[Exception], ...]:
    """The `Exception` subclasses defined in these packages and all their submodules (each
    imported), in the order they are found."""
    found: dict[type[Exception], None] = {}
    for package in packages:
        for module in _modules(package):
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, Exception) and value.__module__ == module.__name__:
                    found[value] = None
    return tuple(found)


def _taken(
    registry: ExceptionMiddleware,
    cls: type[Exception],
    ignore: tuple[type[Exception], ...],
    defaults: Defaults | None,
) -> bool:
    mine = reference_resolve(registry, cls, ignore=ignore)
    if mine is not None and mine.handler is not reraise:
        return True
    if defaults is None:
        return False
    layered = registry.resolve(cls, defaults=defaults)  # a framework's own handler takes it
    return layered is not None and layered.handler is not reraise and layered.key not in ignore


def _modules(package: ModuleType | str) -> list[ModuleType]:
    if isinstance(package, str):
        package = importlib.import_module(package)
    if not isinstance(package, ModuleType):
        raise TypeError(f"coverage() walks packages (a module or its name), got {package!r}")
    modules = [package]
    path = getattr(package, "__path__", None)
    if path is not None:  # a package: its submodules too
        for info in pkgutil.walk_packages(path, prefix=f"{package.__name__}."):
            modules.append(importlib.import_module(info.name))
    return modules
