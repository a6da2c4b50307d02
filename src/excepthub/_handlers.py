"""Invocation: how one handler is called with the error and the adapter's context values.

A handler is compiled once, at registration, into a `Handler`. The common handler (the error,
plus values picked from the context by name or with `Context`) is called directly; a handler
that declares `Depends` gets them from fast-depends (`_injection`), its yield dependencies
closed after it, and its other parameters filled as for any handler.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio.to_thread
from fast_depends import Provider
from fast_depends.dependencies import Dependant
from fast_depends.library import CustomField

from ._injection import Dependencies

__all__ = ["Context", "ContextField", "Handler", "available", "compile_handler", "safe_repr"]

_EMPTY: Final = inspect.Parameter.empty
_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
ERROR_NAMES: Final = frozenset({"exc", "error", "exception"})
"""Names that mark a later, unannotated positional parameter as the error's: `(request, exc)`."""
LEADING: Final = "request"
"""The context value that a parameter before the error's receives when no value is named like it:
Starlette-style `(request, exc)` handlers come over whatever they call it (`_`, `req`, `conn`)."""


def Context(name: str = "", *, default: Any = _EMPTY) -> Any:
    """A handler parameter filled from the context the adapter passes to `handle`.

    `Context()` takes the value named like the parameter; `Context("message.body")` takes
    `context["message"].body` (a dotted path walks attributes, then keys). Without a value and
    without `default`, the handler is not called and a `LookupError` names what is missing.
    Typed `Any`, as `Depends` is, so that `request_id: str = Context()` passes a type checker;
    `Annotated[str, Context("request_id")]` works too.

    ```python
    @exc.add_handler(ValueError, publish=True)
    async def fallback(error: ValueError, request_id: str = Context(default="-")) -> dict:
        return {"error": "bad value", "request_id": request_id}
    ```
    """
    return ContextField(name, default=default)


class ContextField(CustomField):
    """What `Context(...)` makes: a fast-depends field that reads the `handle` context."""

    __slots__ = ("default", "name", "path")

    def __init__(self, name: str = "", *, default: Any = _EMPTY) -> None:
        super().__init__(cast=False, required=default is _EMPTY)
        if not isinstance(name, str):
            raise TypeError(f"Context name must be a str, got {name!r}")
        self.name = name
        self.default = default
        self.path: tuple[str, ...] = tuple(name.split(".")) if name else ()

    def lookup(self, context: Mapping[str, Any], param_name: str) -> Any:
        """The value this field gives the parameter `param_name` in `context`."""
        head, *rest = self.path or (param_name,)
        try:
            value = context[head]
            for part in rest:
                value = value[part] if isinstance(value, Mapping) else getattr(value, part)
        except (KeyError, AttributeError):
            pass
        else:
            return value
        if self.default is _EMPTY:  # raised outside `except`: the error stays its __context__
            raise LookupError(
                f"no context value {self.name or param_name!r} for parameter {param_name!r}"
                f"{available(context)}"
            )
        return self.default

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        # fast-depends' hook, used only for handlers that also declare `Depends`; async so
        # that fast-depends awaits it on the loop instead of sending it to a thread.
        assert self.param_name is not None
        kwargs[self.param_name] = self.lookup(kwargs, self.param_name)
        return kwargs

    def __repr__(self) -> str:
        default = "" if self.default is _EMPTY else f", default={self.default!r}"
        return f"Context({self.name!r}{default})"


# One way of filling a parameter from the context: (kind, parameter name, detail).
_Fill = tuple[str, str, Any]


class Handler:
    """A registered handler, compiled for calling: `await handler.invoke(error, context)`.

    `invoke` is chosen once, for the handler's shape; `alone` is the handler itself when it is
    an async function of the error alone (the common handler), for callers to call directly.
    """

    __slots__ = (
        "alone",
        "dependencies",
        "drops_values",
        "error_types",
        "func",
        "invoke",
        "name",
        "needs",
        "returns",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        inline: bool,
        error_param: str,
        positional: tuple[str, ...],
        fills: tuple[_Fill, ...],
        dependencies: Dependencies | None,
        error_types: tuple[type, ...] | None = None,
        returns: Any = _EMPTY,
    ) -> None:
        self.func = func
        self.name = _describe(func)
        self.dependencies = dependencies  # only when the handler uses Depends
        self.error_types = error_types  # what the error parameter is annotated with, if anything
        self.returns = returns  # the return annotation, `_EMPTY` when there is none
        # each entry: the context names, any one of which fills one required parameter
        self.needs: tuple[tuple[str, ...], ...] = (
            *((name, LEADING) if name != LEADING else (name,) for name in positional),
            *((name,) for kind, name, detail in fills if kind == "name" and detail is _EMPTY),
        )
        self.drops_values = False  # set by the registry: a side-effect handler not typed `-> None`
        self.invoke = _invoker(func, inline, error_param, positional, fills, dependencies)
        simple = dependencies is None and not positional and not fills and _is_async(func)
        self.alone: Callable[[BaseException], Awaitable[Any]] | None = func if simple else None

    def fillable(self, supplied: frozenset[str]) -> bool:
        """Whether a framework that supplies the context names `supplied` fills every parameter."""
        return all(any(name in supplied for name in names) for names in self.needs)

    def __repr__(self) -> str:
        return f"<Handler {self.name}>"


_Invoke = Callable[[BaseException, Mapping[str, Any]], Awaitable[Any]]


def _invoker(
    func: Callable[..., Any],
    inline: bool,
    error_param: str,
    positional: tuple[str, ...],
    fills: tuple[_Fill, ...],
    dependencies: Dependencies | None,
) -> _Invoke:
    call = _caller(func, inline=inline)
    if dependencies is not None:
        return _injected(func, inline, error_param, positional, fills, dependencies)
    if len(positional) == 1 and not fills and _is_async(func):
        # Starlette-style `(request, exc)`, the common shape: its own coroutine, no wrapper
        (first,) = positional

        def call_with_first(error: BaseException, context: Mapping[str, Any]) -> Any:
            return func(_leading(first, context), error)

        return call_with_first
    if positional:
        # Starlette-style `(request, exc)`: an async one hands back its own coroutine too
        run = (lambda args, kwargs: func(*args, **kwargs)) if _is_async(func) else call

        def call_after_positional(error: BaseException, context: Mapping[str, Any]) -> Any:
            args = (*[_leading(name, context) for name in positional], error)
            return run(args, _fill(fills, context) if fills else {})

        return call_after_positional
    if _is_async(func):  # await the handler's own coroutine: no wrapper on the way
        if not fills:
            return lambda error, context: func(error)
        return lambda error, context: func(error, **_fill(fills, context))
    if not fills:
        return lambda error, context: call((error,), {})
    return lambda error, context: call((error,), _fill(fills, context))


def _injected(
    func: Callable[..., Any],
    inline: bool,
    error_param: str,
    positional: tuple[str, ...],
    fills: tuple[_Fill, ...],
    dependencies: Dependencies,
) -> _Invoke:
    is_async = _is_async(func)

    def invoke(error: BaseException, context: Mapping[str, Any]) -> Awaitable[Any]:
        args = (*[_leading(name, context) for name in positional], error)
        kwargs = _fill(fills, context) if fills else {}
        values = {**context, error_param: error}  # a dependency may ask for either by name
        return dependencies.invoke(func, args, kwargs, values, is_async=is_async, inline=inline)

    return invoke


def _leading(name: str, context: Mapping[str, Any]) -> Any:
    """The value of a parameter before the error's: the one named like it, else `LEADING`."""
    if name in context:
        return context[name]
    if LEADING in context:
        return context[LEADING]
    # raised here, not as a bare KeyError, which would hide the error's chain
    raise LookupError(
        f"no context value {name!r} (nor {LEADING!r}) for parameter {name!r}{available(context)}"
    )


def compile_handler(func: Callable[..., Any], *, inline: bool, provider: Provider) -> Handler:
    """Read `func`'s signature once and build its `Handler`; `TypeError` if it takes no error."""
    if not callable(func):
        raise TypeError(f"handler {safe_repr(func)} is not callable")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(f"handler {_describe(func)} is a generator; a handler returns its value")
    try:
        signature = inspect.signature(func)
    except Exception as error:  # TypeError, ValueError, or what a broken repr raises in inspect
        raise TypeError(f"handler {safe_repr(func)} has no signature to read: {error}") from None
    params = list(signature.parameters.values())
    annotations = _annotations(func, params)
    error_index = _error_index(params, annotations)
    if error_index is None:
        raise TypeError(
            f"handler {_describe(func)} cannot take the exception as its first positional argument"
        )
    positional = tuple(p.name for p in params[:error_index])
    fills: list[_Fill] = []
    depends: list[tuple[str, Dependant]] = []
    for param in params[error_index + 1 :]:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        metadata = _annotated_metadata(annotations.get(param.name))
        field = next((m for m in (param.default, *metadata) if isinstance(m, CustomField)), None)
        dependant = next((m for m in (param.default, *metadata) if isinstance(m, Dependant)), None)
        if dependant is not None:
            depends.append((param.name, dependant))
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            fills.append(("all", param.name, None))
        elif isinstance(field, ContextField):  # a default or `Annotated[..., Context()]`
            fills.append(("context", param.name, field))
        elif field is not None:
            fills.append(("field", param.name, field.set_param_name(param.name)))
        else:
            fills.append(("name", param.name, param.default))
    error_param = params[error_index]
    dependencies = None
    if depends:
        if error_param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError(f"handler {_describe(func)} with Depends must name its error parameter")
        dependencies = Dependencies(depends, provider)
    return Handler(
        func,
        inline=inline,
        error_param=error_param.name,
        positional=positional,
        fills=tuple(fills),
        dependencies=dependencies,
        error_types=_exception_classes(annotations.get(error_param.name)),
        returns=annotations.get("return", _EMPTY),
    )


def _fill(fills: tuple[_Fill, ...], context: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for kind, name, detail in fills:
        if kind == "name":
            if name in context:
                kwargs[name] = context[name]
            elif detail is _EMPTY:
                raise LookupError(
                    f"no context value {name!r} for parameter {name!r}{available(context)}"
                )
        elif kind == "context":
            kwargs[name] = detail.lookup(context, name)
        elif kind == "field":  # a foreign fast-depends field (FastStream's Context): ask it
            solved = detail.use(**context)
            if name in solved:
                kwargs[name] = solved[name]
        else:
            kwargs.update(context)
    return kwargs


def _caller(
    func: Callable[..., Any], *, inline: bool
) -> Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[Any]]:
    if _is_async(func):

        async def call_async(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return await func(*args, **kwargs)

        return call_async

    async def call_sync(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if inline:
            result = func(*args, **kwargs)
        else:  # a blocking handler must not stall the event loop
            (result,) = await anyio.to_thread.run_sync(_boxed, func, args, kwargs)
        # a sync callable that hands back a coroutine (None, the usual answer, skips the check)
        if result is not None and inspect.isawaitable(result):
            result = await result
        return result

    return call_sync


def _boxed(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any]:
    # trio refuses a worker thread's result that is a coroutine; a tuple passes through
    return (func(*args, **kwargs),)


def _is_async(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


def _error_index(params: list[inspect.Parameter], annotations: Mapping[str, Any]) -> int | None:
    """Where the error goes: the first positional parameter annotated with an exception class,
    else a later unannotated one named in `ERROR_NAMES`, else the first positional parameter
    (so Starlette-style `(request, exc)` handlers work, annotated or not)."""
    positional = [
        i for i, p in enumerate(params) if p.kind in _POSITIONAL or p.kind.name == "VAR_POSITIONAL"
    ]
    if not positional:
        return None
    for i in positional:
        if params[i].kind.name == "VAR_POSITIONAL":
            break
        if _is_exception_annotation(annotations.get(params[i].name)):
            return i
    if params[positional[0]].name not in ERROR_NAMES:
        for i in positional[1:]:
            if params[i].kind.name == "VAR_POSITIONAL":
                break
            param = params[i]
            if (
                param.name in ERROR_NAMES
                and param.name not in annotations
                and param.default is _EMPTY
            ):
                return i
    return positional[0]


def _exception_classes(annotation: Any) -> tuple[type, ...] | None:
    """The exception classes an annotation names (`KeyError | IndexError`), or `None`."""
    if not _is_exception_annotation(annotation):
        return None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(c for a in typing.get_args(annotation) for c in _exception_classes(a) or ())
    return (typing.get_origin(annotation) or annotation,)


def _is_exception_annotation(annotation: Any) -> bool:
    if annotation is None:
        return False
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(_is_exception_annotation(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, BaseException)


def _annotations(func: Callable[..., Any], params: list[inspect.Parameter]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to what is written
        return {p.name: p.annotation for p in params if p.annotation is not _EMPTY}


def _annotated_metadata(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Annotated:
        return tuple(typing.get_args(annotation)[1:])
    return ()


def available(context: Mapping[str, Any]) -> str:
    """The context names a handler could have asked for, for a `LookupError`'s message."""
    names = sorted(name for name in context if not name.endswith("__"))
    return f"; the context has {', '.join(names)}" if names else "; the context is empty"


def safe_repr(value: object) -> str:
    """`repr(value)` for an error message, even when that repr raises."""
    try:
        return repr(value)
    except Exception:  # a hostile or broken __repr__ must not replace the TypeError we raise
        return f"<{type(value).__qualname__} object at {id(value):#x}>"


def _describe(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if name is None:
        return repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module and module != "builtins" else str(name)
