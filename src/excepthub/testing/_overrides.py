"""Overrides: replace handlers (and dependencies) for a test, and put everything back after."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .._registry import ExceptionMiddleware

__all__ = ["HandlerOverrides", "overriding"]


class HandlerOverrides:
    """Handler replacements for one registry, undone when the block ends: what FastAPI's
    `app.dependency_overrides` is for dependencies.

    ```python
    with overriding(exc) as overrides:
        overrides[payment_failed] = fake_payment_failed  # that handler, for every class it has
        overrides[TimeoutError] = fake_timeout  # whatever is registered for that class
        overrides.dependency(get_pager, lambda: fake_pager)  # a `Depends` of any handler
        exc.add_handler(KeyError)(log_key)  # registered inside the block: undone too
    ```
    """

    def __init__(self, registry: ExceptionMiddleware) -> None:
        if not isinstance(registry, ExceptionMiddleware):
            raise TypeError(
                f"overriding() takes an excepthub.ExceptionMiddleware, got {registry!r}"
            )
        self.registry = registry
        self._snapshot: object | None = None
        self._dependencies: dict[Callable[..., Any], Any] = {}

    def __setitem__(
        self, target: Callable[..., Any] | type[Exception], replacement: Callable[..., Any]
    ) -> None:
        """Replace a handler: `target` is a registered handler (replaced for every class it is
        registered for, as the same kind) or an exception class (its registrations replaced,
        fallback and side-effect alike). The replacement is checked as `add_handler` checks."""
        if self._snapshot is None:
            raise RuntimeError("override handlers inside `with overriding(exc) as overrides:`")
        registry = self.registry
        slots = [
            (publish, key)
            for publish, handlers in ((True, registry.publish_handlers), (False, registry.handlers))
            for key, handler in handlers.items()
            if key is target or handler is target
        ]
        if not slots:
            raise LookupError(_not_registered(registry, target))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for publish, key in slots:
                registry.add_handler(key, publish=publish)(replacement)
        for warning in caught:  # pointed at the test's `overrides[...] = ...` line
            warnings.warn(warning.message, stacklevel=2)

    def dependency(self, original: Callable[..., Any], replacement: Callable[..., Any]) -> None:
        """Replace a dependency (`Depends(original)`) through the registry's `provider` until
        the block ends."""
        if self._snapshot is None:
            raise RuntimeError("override dependencies inside `with overriding(exc) as overrides:`")
        provider = self.registry.provider
        self._dependencies.setdefault(original, provider.overrides.get(original))
        provider.override(original, replacement)

    def __enter__(self) -> HandlerOverrides:
        if self._snapshot is not None:
            raise RuntimeError("these overrides are already active; open a new overriding()")
        self._snapshot = self.registry._snapshot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Put back every registration and dependency as it was (what leaving the block does)."""
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is None:
            return
        self.registry._restore(snapshot)
        overrides = self.registry.provider.overrides
        for original, before in self._dependencies.items():
            if before is None:
                overrides.pop(original, None)
            else:
                overrides[original] = before
        self._dependencies.clear()


def overriding(registry: ExceptionMiddleware) -> HandlerOverrides:
    """Override handlers of `registry` for the block; every registration is put back when it
    ends, the ones made inside it included.

    ```python
    with overriding(exc) as overrides:
        overrides[payment_failed] = lambda error: {"error": "test double"}
        ...
    assert exc.resolve(CardDeclined).handler is payment_failed
    ```

    Registrations made by other tasks while the block runs are undone too: override in the
    test, not while a shared registry serves other tests concurrently.
    """
    return HandlerOverrides(registry)


def _not_registered(registry: ExceptionMiddleware, target: object) -> str:
    name = getattr(target, "__qualname__", None) or repr(target)
    if isinstance(target, type) and issubclass(target, BaseException):
        resolution = registry.resolve(target)
        reached = (
            ""
            if resolution is None
            else f" (its errors reach {getattr(resolution.handler, '__qualname__', '?')}, "
            f"registered for {resolution.key.__qualname__}: override that class or handler)"
        )
        return (
            f"no handler is registered for {name}{reached}; to add one for the test, call "
            f"exc.add_handler({name}, publish=...) inside the block"
        )
    keys = sorted({k.__qualname__ for k in (*registry.handlers, *registry.publish_handlers)})
    return (
        f"{name} is not a handler of this registry (its classes: {', '.join(keys) or 'none'}); "
        "override a registered handler or exception class, or a dependency with "
        "overrides.dependency(original, replacement)"
    )
