"""The resolution rule in its plainest form: an uncached MRO walk over a registry's maps."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._outcome import Resolution, reraise
from .._registry import ExceptionMiddleware

__all__ = ["candidates", "reference_resolve"]


def candidates(
    registry: ExceptionMiddleware,
    exc_type: type[BaseException],
    *,
    publish: bool = True,
    ignore: Iterable[type[BaseException]] = (),
) -> list[Resolution]:
    """The handlers an exception of class `exc_type` may reach, in the order they are asked:
    fallback handlers from the nearest class of its MRO to the farthest, then side-effect
    handlers likewise. For an exception group class only keys that are group classes count.

    `publish=False` leaves the fallback handlers out (as `handle(..., publish=False)` does);
    registrations for a class in `ignore` are left out (a catch-all such as `Exception`).
    """
    ignored = set(ignore)
    group_only = issubclass(exc_type, BaseExceptionGroup)
    mro = [
        klass
        for klass in exc_type.__mro__
        if klass not in ignored and (not group_only or issubclass(klass, BaseExceptionGroup))
    ]
    maps: list[tuple[bool, Mapping[type, Callable[..., Any]]]] = [(False, registry.handlers)]
    if publish:
        maps.insert(0, (True, registry.publish_handlers))
    # a registration's condition, once registrations have one, is checked here: one that does
    # not hold is no candidate
    return [
        Resolution(handler, kind, klass)
        for kind, handlers in maps
        for klass in mro
        if (handler := handlers.get(klass)) is not None
    ]


def reference_resolve(
    registry: ExceptionMiddleware,
    exc_type: type[BaseException],
    *,
    publish: bool = True,
    ignore: Iterable[type[BaseException]] = (),
) -> Resolution | None:
    """Which handler an exception of class `exc_type` reaches by the plain rule, or `None`.

    The rule, with no memo: the nearest class in the MRO with a fallback handler, else the
    nearest with a side-effect handler. A pass-through (`excepthub.reraise`) is placed by its
    MRO position alone: it wins over a farther handler of either kind and loses to a nearer
    one. `registry.resolve` must agree for every class:

    ```python
    @given(exception_classes(exc))
    def test_the_registry_follows_the_rule(cls):
        assert exc.resolve(cls) == reference_resolve(exc, cls)
    ```
    """
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise TypeError(f"reference_resolve() takes an exception class, got {exc_type!r}")
    found = candidates(registry, exc_type, publish=publish, ignore=ignore)
    if not found:
        return None
    first = found[0]
    general = next((c for c in found if not c.publish), None)
    if first.publish and general is not None and reraise in (first.handler, general.handler):
        position = exc_type.__mro__.index
        return general if position(general.key) < position(first.key) else first
    return first
