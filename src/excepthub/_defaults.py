"""What a handler is registered for, checked as it is given, and a framework's own handlers
(`Defaults`), which an adapter layers under the user's."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeAlias

from ._handlers import safe_repr

__all__ = [
    "FRAMEWORKS",
    "Defaults",
    "ExceptionKey",
    "HandlerMap",
    "check_key",
    "flatten",
    "keys_of",
]

ExceptionKey: TypeAlias = type[Exception] | tuple[type[Exception], ...]
"""What a handler is registered for: an `Exception` subclass or a tuple of them."""


class HandlerMap(Protocol):
    """`{class or tuple of classes: handler}`, as a protocol because `Mapping` is invariant in
    its key: a `dict[type[KeyError], ...]` is accepted where exception classes are expected."""

    def items(self) -> Iterable[tuple[ExceptionKey, Callable[..., Any]]]: ...


class Defaults:
    """A framework's own handlers, layered under the user's by an adapter.

    They resolve by the same MRO rule as the user's handlers, so they win over a broad user
    handler such as `Exception`; a user handler for the same class replaces them.

    ```python
    FASTSTREAM = Defaults("faststream", handlers={IgnoredException: reraise},
                          publish_handlers={IgnoredException: reraise})
    await exc.handle(error, defaults=FASTSTREAM, message=msg)
    ```

    `logs_unhandled=True` says the framework itself logs an error that goes on unhandled (the
    server's "Exception in ASGI application", FastStream's consumer log): excepthub then counts
    it and shows it to hooks, but writes no record of its own, so the error is logged once.

    `framework` names the framework on every `ErrorEvent` of this layering (`"fastapi"`); an
    adapter with several layerings for one framework gives each its own `name` and the same
    `framework`. It defaults to `name`.

    `supplies` names the context values the adapter passes to `handle` under this layering
    (`("request", "websocket", "correlation_id")`). Then a handler that asks for a value the
    framework does not supply is left out of this layering (it runs where it can be filled),
    and `ExceptionMiddleware.plug_in` refuses a handler that no plugged framework can fill.
    """

    __slots__ = (
        "__weakref__",
        "framework",
        "handlers",
        "logs_unhandled",
        "name",
        "publish_handlers",
        "supplies",
    )

    def __init__(
        self,
        name: str,
        *,
        handlers: HandlerMap | None = None,
        publish_handlers: HandlerMap | None = None,
        logs_unhandled: bool = False,
        supplies: Iterable[str] | None = None,
        framework: str | None = None,
    ) -> None:
        if not isinstance(name, str) or (framework is not None and not isinstance(framework, str)):
            raise TypeError(
                f"Defaults: name and framework must be str, got {safe_repr(name)}, "
                f"{safe_repr(framework)}"
            )
        if not isinstance(logs_unhandled, bool):
            raise TypeError(f"logs_unhandled must be a bool, got {safe_repr(logs_unhandled)}")
        if isinstance(supplies, str) or (
            supplies is not None and not all(isinstance(n, str) for n in supplies)
        ):
            raise TypeError(
                f"supplies must be an iterable of context names, got {safe_repr(supplies)}"
            )
        self.name = name
        self.framework = name if framework is None else framework
        self.logs_unhandled = logs_unhandled
        self.supplies: frozenset[str] | None = None if supplies is None else frozenset(supplies)
        if self.supplies is not None:
            FRAMEWORKS.add(self)
        self.handlers: Mapping[type[Exception], Callable[..., Any]] = MappingProxyType(
            flatten(handlers, "handlers")
        )
        self.publish_handlers: Mapping[type[Exception], Callable[..., Any]] = MappingProxyType(
            flatten(publish_handlers, "publish_handlers")
        )

    def __repr__(self) -> str:
        return f"Defaults({self.name!r})"


FRAMEWORKS: Final[weakref.WeakSet[Defaults]] = weakref.WeakSet()
"""Every layering that says what it supplies: the frameworks whose adapters are imported."""


def keys_of(exc: object) -> tuple[type[Exception], ...]:
    keys = exc if isinstance(exc, tuple) else (exc,)
    if not keys:
        raise TypeError("cannot register a handler for an empty tuple of exception classes")
    for key in keys:
        check_key(key)
    return keys


def check_key(key: object) -> None:
    if not isinstance(key, type) or not issubclass(key, BaseException):
        raise TypeError(
            f"cannot register a handler for {safe_repr(key)}: it is not an exception class"
        )
    if not issubclass(key, Exception):
        raise TypeError(
            f"cannot register a handler for {key.__qualname__}: it is a BaseException that is "
            "not an Exception (cancellation, KeyboardInterrupt, SystemExit, GeneratorExit), "
            "which excepthub never handles"
        )


def flatten(handlers: object, where: str) -> dict[type[Exception], Callable[..., Any]]:
    """`{key_or_tuple: handler}` as `{class: handler}`, checked; `TypeError` names the culprit."""
    if handlers is None:
        return {}
    if not isinstance(handlers, Mapping):
        raise TypeError(f"{where} must be a mapping of exception classes to handlers")
    flat: dict[type[Exception], Callable[..., Any]] = {}
    for key, func in handlers.items():
        try:
            keys = keys_of(key)
        except TypeError as error:
            raise TypeError(f"{where}: {error} (handler {safe_repr(func)})") from None
        if not callable(func):
            names = ", ".join(k.__qualname__ for k in keys)
            raise TypeError(
                f"{where}: cannot register {safe_repr(func)} for {names}: it is not callable"
            )
        for one in keys:
            flat[one] = func
    return flat
