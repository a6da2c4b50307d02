"""The resolution rule in its plainest form: the documented order of candidates, uncached,
computed from a registry's registrations alone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._outcome import Resolution, reraise
from .._registry import ExceptionMiddleware

__all__ = ["candidates", "reference_resolve"]

_Place = tuple[int, int, int]  # (MRO index, 0 for a fallback / 1 for a side effect, order asked)


def candidates(
    registry: ExceptionMiddleware,
    error: BaseException | type[BaseException],
    *,
    publish: bool = True,
    ignore: Iterable[type[BaseException]] = (),
) -> list[Resolution]:
    """The registrations an exception (or a class of them) may reach, in the order they are
    asked: fallback handlers from the nearest class of its MRO to the farthest, then side-effect
    handlers likewise; for one class, its conditional registrations in registration order
    before its unconditional one. A pass-through (`excepthub.reraise`) stands at its place in
    the MRO: what is nearer is asked before it; what is farther, after it only when it is
    conditional. For an exception group class only keys that are group classes count.

    Conditions are not evaluated (each `Resolution` carries its own). `publish=False` leaves
    the fallback handlers out (as `handle(..., publish=False)` does); registrations for a class
    in `ignore` are left out (a catch-all such as `Exception`). `registry.candidates` must agree.
    """
    cls = _class_of(error)
    if not issubclass(cls, Exception):  # cancellation and the like: never handled
        return []
    ignored = set(ignore)
    per_class: dict[tuple[type, bool], list[Resolution]] = {}
    for registration in registry.registrations():  # each class's own in the order asked
        if registration.key not in ignored and (publish or not registration.publish):
            per_class.setdefault((registration.key, registration.publish), []).append(registration)
    group_only = issubclass(cls, BaseExceptionGroup)
    mro = [k for k in cls.__mro__ if not group_only or issubclass(k, BaseExceptionGroup)]
    placed = sorted(
        (
            ((at, kind, within), registration)
            for at, klass in enumerate(mro)
            for kind, fallback in enumerate((True, False))
            for within, registration in enumerate(per_class.get((klass, fallback), ()))
        ),
        key=lambda item: item[0],
    )
    handlers = [(place, r) for place, r in placed if r.handler is not reraise]
    found: list[Resolution] = []
    for place, passing in ((p, r) for p, r in placed if r.handler is reraise):
        found += _usual([(p, r) for p, r in handlers if p < place])
        handlers = [(p, r) for p, r in handlers if not p < place]
        found.append(passing)
        if passing.condition is None:  # nothing past it is asked
            return found
    return found + _usual(handlers)


def _usual(placed: list[tuple[_Place, Resolution]]) -> list[Resolution]:
    """Fallback handlers nearest first, then side-effect handlers nearest first."""
    return [r for fallback in (True, False) for _, r in placed if r.publish is fallback]


def reference_resolve(
    registry: ExceptionMiddleware,
    error: BaseException | type[BaseException],
    *,
    publish: bool = True,
    ignore: Iterable[type[BaseException]] = (),
) -> Resolution | None:
    """Which handler an exception reaches by the plain rule, or `None`.

    Given the exception itself, the first candidate whose condition holds (a condition that
    raises does not); given a class, whose conditions cannot be asked, the first unconditional
    candidate. `registry.resolve` must agree for every class and every exception:

    ```python
    @given(exception_classes(exc))
    def test_the_registry_follows_the_rule(cls):
        assert exc.resolve(cls) == reference_resolve(exc, cls)
    ```
    """
    instance = not isinstance(error, type)
    for candidate in candidates(registry, error, publish=publish, ignore=ignore):
        if candidate.condition is None or (instance and _holds(candidate.condition, error)):
            return candidate
    return None


def _holds(condition: Any, error: Any) -> bool:
    try:
        return bool(condition(error))
    except Exception:  # a condition that raises does not hold
        return False


def _class_of(error: object) -> type[BaseException]:
    if isinstance(error, BaseException):
        return type(error)
    if isinstance(error, type) and issubclass(error, BaseException):
        return error
    raise TypeError(
        f"reference_resolve() takes an exception or an exception class, got {error!r}"
    )
