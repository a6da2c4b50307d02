"""Mistake-proofing: registrations that cannot work are refused, and those that work but not as
they were likely meant are warned about, at the moment they are made.

Each check names what is wrong and the fix. Nothing here takes part in handling an error.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from ._handlers import Handler, safe_repr
from ._outcome import DroppedValueWarning, Resolution, ShadowedHandlerWarning, reraise

if TYPE_CHECKING:
    from ._defaults import Defaults

__all__ = [
    "check_error_parameter",
    "check_fillable",
    "check_returns",
    "shadowed",
    "shadowed_pair",
    "warn_dropped",
    "warn_shadowed",
]


# -- the error parameter ----------------------------------------------------------------------


def check_error_parameter(handler: Handler, keys: tuple[type[Exception], ...]) -> None:
    """`TypeError` when the handler's error parameter is annotated with classes that a key is
    not a subclass of: it would be called with what it does not take."""
    accepted = handler.error_types
    if accepted is None:
        return
    for key in keys:
        if not issubclass(key, accepted):
            wanted = " | ".join(c.__qualname__ for c in accepted)
            raise TypeError(
                f"cannot register {handler.name} for {key.__qualname__}: its error "
                f"parameter is annotated {wanted}, which {key.__qualname__} is not a "
                f"subclass of; annotate it {key.__qualname__} (or a base class of every "
                "class it is registered for), "
                f"or register it for {wanted}"
            )


# -- parameters no framework fills ------------------------------------------------------------


def check_fillable(
    handler: Handler, key: type, plugged: tuple[Defaults, ...], imported: Iterable[Defaults]
) -> None:
    """`TypeError` when no framework can fill every context value `handler` needs: neither
    one the registry is plugged into, nor one whose adapter is `imported` (it may be plugged
    in next: a registry serving several frameworks is plugged into one at a time)."""
    frameworks = [d for d in plugged if d.supplies is not None]
    if not handler.needs or not frameworks:
        return
    known = [*frameworks, *(d for d in imported if d not in frameworks)]
    if any(handler.fillable(d.supplies) for d in known if d.supplies is not None):
        return
    supplied = frozenset().union(*(d.supplies or () for d in frameworks))
    offered = "; ".join(
        f"{d.name} supplies {', '.join(sorted(d.supplies or ()))}" for d in frameworks
    )
    missing = next((names for names in handler.needs if not supplied.intersection(names)), None)
    where = f"cannot register {handler.name} for {key.__qualname__}"
    if missing is None:  # each name is supplied somewhere, but never all of them together
        needed = ", ".join(names[0] for names in handler.needs)
        raise TypeError(
            f"{where}: no framework it serves supplies all of its parameters ({needed}) "
            f"({offered}); give the others a default, or split it in one handler per framework"
        )
    name = missing[0]
    close = difflib.get_close_matches(name, sorted(supplied), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    raise TypeError(
        f"{where}: nothing fills its parameter {name!r} ({offered}){hint} "
        "Rename it, give it a default, or take it with Context(...) or Depends(...)"
    )


# -- dropped values ---------------------------------------------------------------------------


def check_returns(handler: Handler, names: str, *, stacklevel: int) -> None:
    """Warn when a side-effect handler is typed to return a value, which would be dropped; an
    untyped one is marked, to be warned about the first time it returns one."""
    if _returns_value(handler.returns):
        warnings.warn(
            f"{handler.name} is registered for {names} as a side-effect handler, but it "
            f"returns {_type_name(handler.returns)}: its value will be dropped. Register "
            "it with publish=True to send its value, or annotate it -> None",
            DroppedValueWarning,
            stacklevel=stacklevel + 1,
        )
    elif handler.returns is inspect.Parameter.empty:
        handler.drops_values = True  # not typed: warn the first time it returns a value


def warn_dropped(handler: Handler, error: BaseException, value: Any) -> None:
    """Warn that a side-effect handler returned a value, which is dropped."""
    warnings.warn(
        f"the side-effect handler {handler.name} returned {safe_repr(value)[:60]} for a "
        f"{type(error).__qualname__}: the value is dropped. Register it with publish=True to "
        "send its value, or return None",
        DroppedValueWarning,
        stacklevel=2,
    )


def _returns_value(annotation: Any) -> bool:
    """Whether a return annotation says the handler returns a value (`-> dict`, not `-> None`)."""
    if annotation is inspect.Parameter.empty or annotation is None or annotation is type(None):
        return False
    if annotation is Any or annotation is object or annotation is NoReturn:
        return False
    if isinstance(annotation, str):  # an unresolved forward reference: do not guess
        return annotation not in ("None", "Any", "object", "NoReturn", "Never")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return all(_returns_value(a) for a in args)
    if origin in (Awaitable, Coroutine):
        return bool(args) and _returns_value(args[-1])
    return getattr(annotation, "__name__", "") != "Never"


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or str(annotation)


# -- shadowed side-effect handlers ------------------------------------------------------------


def shadowed(
    general: Iterable[tuple[type, Handler]],
    nearest_fallback: Callable[[type], Resolution | None],
) -> list[tuple[Resolution, Resolution]]:
    """The side-effect handlers (`general`, by class) that a fallback handler for a base class
    takes every direct instance from: the nearest unconditional one, as `nearest_fallback(cls)`
    answers for their class. A class in both maps is not one: FastStream's own idiom, the
    side-effect handler serving the errors that have no result to replace (parser errors)."""
    found = []
    for key, handler in general:
        if handler.func is reraise:
            continue
        fallback = nearest_fallback(key)
        if fallback is not None and fallback.handler is not reraise and fallback.key is not key:
            found.append((Resolution(handler.func, False, key), fallback))
    return found


def shadowed_pair(pair: tuple[Resolution, Resolution]) -> tuple[type, type]:
    """What a shadowed pair is remembered by, so that it is warned about once."""
    return pair[0].key, pair[1].key


def warn_shadowed(pairs: Iterable[tuple[Resolution, Resolution]], *, stacklevel: int) -> None:
    """Warn of each side-effect handler that never runs for its own class."""
    for hidden, by in pairs:
        warnings.warn(
            f"the side-effect handler {_handler_name(hidden)} for {hidden.key.__qualname__} "
            f"never runs for {hidden.key.__qualname__} errors: the fallback handler "
            f"{_handler_name(by)} for its base class {by.key.__qualname__} takes it first "
            "(fallback handlers are asked before side-effect handlers, however far up the "
            "MRO; only a Decline from it passes the error on). For both, register the side "
            "effect as an on_error hook, or a fallback "
            f"for {hidden.key.__qualname__} that does both (the documentation's Concepts "
            "page, 'Shadowed side-effect handlers')",
            ShadowedHandlerWarning,
            stacklevel=stacklevel + 1,
        )


def _handler_name(resolution: Resolution) -> str:
    func = resolution.handler
    return getattr(func, "__qualname__", None) or safe_repr(func)
