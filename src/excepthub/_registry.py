"""The registry: registration, resolution, handling, in that order.

Readers take one immutable snapshot (`_State`) per call and registration swaps in a new one,
so a registration made on another thread is served whole or not at all, and never stale
once `add_handler` has returned.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from time import perf_counter
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    NamedTuple,
    NoReturn,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
)

from fast_depends import Provider

from ._groups import leaves, only_leaf, remainder
from ._handlers import Handler, compile_handler, safe_repr
from ._mistakes import (
    check_error_parameter,
    check_fillable,
    check_returns,
    shadowed,
    shadowed_pair,
    warn_dropped,
    warn_shadowed,
)
from ._observe import ErrorHook, Observer
from ._outcome import (
    Outcome,
    OutcomeKind,
    Resolution,
    reraise,
)
from ._retry import Retry

__all__ = ["Defaults", "ExceptionMiddleware", "ExceptionKey"]

ExceptionKey: TypeAlias = type[Exception] | tuple[type[Exception], ...]
"""What a handler is registered for: an `Exception` subclass or a tuple of them."""


class HandlerMap(Protocol):
    """`{class or tuple of classes: handler}`, as a protocol because `Mapping` is invariant in
    its key: a `dict[type[KeyError], ...]` is accepted where exception classes are expected."""

    def items(self) -> Iterable[tuple[ExceptionKey, Callable[..., Any]]]: ...


_F = TypeVar("_F", bound=Callable[..., Any])
_SideEffect = TypeVar("_SideEffect", bound=Callable[..., Awaitable[None] | None])
_T = TypeVar("_T")

_new_outcome: Final = tuple.__new__

MEMO_SIZE: Final = 1024
"""How many exception classes one memo remembers; the oldest is forgotten first."""


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
            _FRAMEWORKS.add(self)
        self.handlers: Mapping[type[Exception], Callable[..., Any]] = MappingProxyType(
            _flatten(handlers, "handlers")
        )
        self.publish_handlers: Mapping[type[Exception], Callable[..., Any]] = MappingProxyType(
            _flatten(publish_handlers, "publish_handlers")
        )

    def __repr__(self) -> str:
        return f"Defaults({self.name!r})"


_FRAMEWORKS: Final[weakref.WeakSet[Defaults]] = weakref.WeakSet()
"""Every layering that says what it supplies: the frameworks whose adapters are imported."""


class _Match(NamedTuple):
    handler: Handler
    resolution: Resolution  # built once per memo entry: `resolve` allocates nothing


class _Routes(NamedTuple):
    """Both answers for one class: the nearest fallback handler and the nearest side-effect one."""

    publish: _Match | None
    general: _Match | None


class _Tables:
    """The maps one layering resolves over, and its memo."""

    __slots__ = ("framework", "general", "logs_unhandled", "memo", "publish", "users")

    def __init__(
        self,
        publish: dict[type, Handler],
        general: dict[type, Handler],
        *,
        logs_unhandled: bool = True,
        users: frozenset[Handler] | None = None,
        framework: str | None = None,
    ) -> None:
        self.publish = publish
        self.general = general
        self.framework = framework  # on every event of this layering
        self.logs_unhandled = logs_unhandled  # excepthub writes the record of an unhandled error
        # the user's handlers, told apart from a framework's defaults layered in
        self.users = frozenset((*publish.values(), *general.values())) if users is None else users
        self.memo: dict[type, _Routes] = {}


class _State:
    """One registration's snapshot: the user's maps and the layerings built over them."""

    __slots__ = ("base", "layers", "side_effect_only")

    def __init__(self, base: _Tables) -> None:
        self.base = base
        self.layers: dict[Defaults | None, _Tables] = {None: base}  # None: the user's alone
        self.side_effect_only: dict[Defaults | None, _Tables] = {}  # for `publish=False`


class ExceptionMiddleware:
    """A registry of exception handlers, shared by every framework a service runs.

    `handlers` run for their effects and the exception counts as handled; `publish_handlers`
    return a value that replaces the failed result. An exception goes to the nearest class in
    its MRO that has a fallback handler, else the nearest with a side-effect handler, else it
    propagates unchanged.

    ```python
    exc = ExceptionMiddleware(handlers={KeyError: log_missing})

    @exc.add_handler(ValueError, publish=True)
    async def fallback(error: ValueError, request_id: str = Context()) -> dict:
        return {"error": "bad value", "request_id": request_id}

    outcome = await exc.handle(ValueError("x"), request_id="r-1")
    assert outcome.value == {"error": "bad value", "request_id": "r-1"}
    ```

    `inline=True` calls sync handlers on the event loop instead of a worker thread. `provider`
    is the fast-depends `Provider` that `Depends` resolve through (`exc.provider.override(...)`
    in tests). `logger`, `log_levels` and `on_error` say how errors are reported; `retry`
    which are transient (see `Retry`).
    """

    serves: tuple[Defaults, ...] = ()
    """The frameworks every registry of this class serves from its construction: set by a
    subclass that is itself a framework's middleware (`excepthub_faststream.ExceptionMiddleware`),
    which is plugged in as soon as it exists (see `plug_in`)."""

    def __init__(
        self,
        handlers: HandlerMap | None = None,
        publish_handlers: HandlerMap | None = None,
        *,
        inline: bool = False,
        provider: Provider | None = None,
        logger: logging.Logger | str | None = "excepthub",
        log_levels: Mapping[OutcomeKind, int | None] | None = None,
        on_error: Iterable[ErrorHook] = (),
        retry: Retry | None = None,
    ) -> None:
        if not isinstance(inline, bool):
            raise TypeError(f"inline must be a bool, got {safe_repr(inline)}")
        if provider is not None and not isinstance(provider, Provider):
            raise TypeError(f"provider must be a fast_depends.Provider, got {safe_repr(provider)}")
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be an excepthub.Retry, got {safe_repr(retry)}")
        self.inline = inline
        self.provider = provider if provider is not None else Provider()
        self.retry = retry
        self._observer = Observer(logger=logger, log_levels=log_levels, hooks=on_error)
        self._lock = threading.Lock()
        self._user: dict[bool, dict[type[Exception], Callable[..., Any]]] = {True: {}, False: {}}
        self._compiled: dict[bool, dict[type, Handler]] = {True: {}, False: {}}
        self._defaults: dict[Defaults, tuple[dict[type, Handler], dict[type, Handler]]] = {}
        self._state = _State(_Tables({}, {}))
        self._plugged: tuple[Defaults, ...] = ()  # the frameworks it serves, by their defaults
        self._warned: set[tuple[type, type]] = set()  # shadowed pairs warned about already
        entries = [
            *self._compile(_flatten(publish_handlers, "publish_handlers"), publish=True),
            *self._compile(_flatten(handlers, "handlers"), publish=False),
        ]
        self._register(entries)
        for framework in self.serves:
            self.plug_in(framework)

    # -- registration -------------------------------------------------------------------

    @overload
    def add_handler(
        self, exc: ExceptionKey, publish: Literal[False] = False, *, inline: bool | None = None
    ) -> Callable[[_SideEffect], _SideEffect]: ...

    @overload
    def add_handler(
        self, exc: ExceptionKey, publish: Literal[True], *, inline: bool | None = None
    ) -> Callable[[_F], _F]: ...

    @overload
    def add_handler(
        self, exc: ExceptionKey, publish: bool, *, inline: bool | None = None
    ) -> Callable[[_F], _F]: ...

    def add_handler(
        self, exc: ExceptionKey, publish: bool = False, *, inline: bool | None = None
    ) -> Callable[[_F], _F]:
        """Register the decorated function for `exc` (a class or a tuple of classes).

        `publish=True` makes it a fallback handler: its return value replaces the failed
        result (`publish` may also be positional, as in FastStream's `add_handler`). The
        function is returned unchanged. Bad input is a `TypeError` here, at
        registration, and a rejected registration changes nothing.

        ```python
        @exc.add_handler((KeyError, IndexError))
        def log_missing(error: LookupError, log: Logger = Depends(get_logger)) -> None:
            log.warning("missing: %s", error)
        ```
        """
        keys = _keys(exc)
        if not isinstance(publish, bool):
            raise TypeError(
                f"add_handler({safe_repr(exc)}): publish must be a bool, got {safe_repr(publish)}"
            )
        if inline is not None and not isinstance(inline, bool):
            raise TypeError(
                f"add_handler({safe_repr(exc)}): inline must be a bool, got {safe_repr(inline)}"
            )

        def register(func: _F) -> _F:
            handler = self._compile_one(func, keys, inline, publish, stacklevel=3)
            self._register([(key, handler, publish) for key in keys])
            return func

        return register

    def on_error(self, hook: ErrorHook) -> ErrorHook:
        """Call `hook` (sync or async) with an `ErrorEvent` for every error; a decorator.

        Hooks observe (metrics, tracing): one that raises is logged and changes nothing.
        """
        self._observer.add_hook(hook)
        return hook

    @property
    def handlers(self) -> Mapping[type[Exception], Callable[..., Any]]:
        """The side-effect handlers registered, read-only."""
        return MappingProxyType(self._user[False])

    @property
    def publish_handlers(self) -> Mapping[type[Exception], Callable[..., Any]]:
        """The fallback handlers registered, read-only."""
        return MappingProxyType(self._user[True])

    def _compile(
        self, funcs: Mapping[type[Exception], Callable[..., Any]], *, publish: bool | None
    ) -> list[tuple[type[Exception], Handler, bool]]:
        compiled: dict[int, Handler] = {}  # one Handler per function, shared by its keys
        entries = []
        for key, func in funcs.items():
            handler = compiled.get(id(func)) or self._compile_one(func, (key,), None, publish)
            compiled[id(func)] = handler
            entries.append((key, handler, bool(publish)))
        return entries

    def _compile_map(
        self, funcs: Mapping[type[Exception], Callable[..., Any]]
    ) -> dict[type, Handler]:
        return {key: handler for key, handler, _ in self._compile(funcs, publish=None)}

    def _compile_one(
        self,
        func: Callable[..., Any],
        keys: tuple[type[Exception], ...],
        inline: bool | None,
        publish: bool | None,  # None: a framework's default, whose role is the adapter's
        *,
        stacklevel: int = 4,  # where a warning points: the user's registration
    ) -> Handler:
        names = ", ".join(k.__qualname__ for k in keys)
        try:
            handler = compile_handler(
                func, inline=self.inline if inline is None else inline, provider=self.provider
            )
        except TypeError as error:
            raise TypeError(f"cannot register {safe_repr(func)} for {names}: {error}") from None
        check_error_parameter(handler, keys)
        if publish is False:
            check_returns(handler, names, stacklevel=stacklevel)
        return handler

    def _register(self, entries: list[tuple[type[Exception], Handler, bool]]) -> None:
        with self._lock:
            for key, handler, _ in entries:  # before anything changes: a refusal changes nothing
                check_fillable(handler, key, self._plugged, list(_FRAMEWORKS))
            user = {kind: dict(funcs) for kind, funcs in self._user.items()}
            compiled = {kind: dict(handlers) for kind, handlers in self._compiled.items()}
            for key, handler, publish in entries:
                user[publish][key] = handler.func
                compiled[publish][key] = handler
            self._user, self._compiled = user, compiled
            self._state = _State(_Tables(compiled[True], compiled[False]))  # clears every memo
            found = self._shadowed(self._state.base)
            news = [pair for pair in found if shadowed_pair(pair) not in self._warned]
            self._warned.update(shadowed_pair(pair) for pair in news)
        warn_shadowed(news, stacklevel=3)  # the user's `add_handler` or constructor call

    def shadowed(self, *, defaults: Defaults | None = None) -> list[tuple[Resolution, Resolution]]:
        """Every side-effect handler that never runs for the direct instances of its class,
        with the fallback handler that takes them first: `[(hidden, by), ...]`.

        `defaults` includes a framework's own handlers, as that adapter resolves.

        ```python
        assert exc.shadowed() == []  # in a test: every side-effect handler can run
        ```
        """
        return self._shadowed(self._tables(defaults))

    def _shadowed(self, tables: _Tables) -> list[tuple[Resolution, Resolution]]:
        def nearest_fallback(cls: type) -> Resolution | None:
            match = _walk(cls, tables).publish
            return None if match is None else match.resolution

        return shadowed(tables.general, nearest_fallback)

    # -- plug-in ------------------------------------------------------------------------

    def plug_in(self, defaults: Defaults) -> None:
        """Note that an adapter serves this registry with the framework `defaults` describes.

        Adapters call it when they are built with the registry. From then on, a handler that
        asks for a context value no framework supplies (`defaults.supplies`: the plugged ones,
        and those whose adapter is imported, which may be plugged in next) is a `TypeError`
        naming the parameter, the names supplied and the nearest match: here for the handlers
        registered so far, at registration for those that follow. A parameter with a default,
        `Context(...)` or `Depends(...)` is never refused.
        """
        if not isinstance(defaults, Defaults):
            raise TypeError(f"plug_in() takes an excepthub.Defaults, got {safe_repr(defaults)}")
        if defaults in self._plugged:
            return
        with self._lock:
            plugged = (*self._plugged, defaults)
            for publish in (True, False):
                for key, handler in self._compiled[publish].items():
                    check_fillable(handler, key, plugged, list(_FRAMEWORKS))
            self._plugged = plugged

    if not TYPE_CHECKING:  # at run time only: to a type checker, a registry is no middleware

        def __iter__(self) -> NoReturn:
            # FastAPI unpacks each `middleware=[...]` entry as (class, args, kwargs)
            raise TypeError(
                "an excepthub.ExceptionMiddleware is a registry, not a middleware: "
                "plug it into FastAPI with FastAPI(middleware=[excepthub_fastapi.middleware(exc)])"
            )

        def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
            if "context" in kwargs:  # FastStream asks its middleware factory `(msg, context=)`
                fix = (
                    "plug it into FastStream with Broker(middlewares="
                    "[excepthub_faststream.middleware(exc)]), or build it as "
                    "excepthub_faststream.ExceptionMiddleware"
                )
            elif len(args) == 2 and not kwargs:  # FastMCP calls `middleware(context, call_next)`
                fix = (
                    "plug it into FastMCP with FastMCP(middleware="
                    "[excepthub_fastmcp.middleware(exc)])"
                )
            else:
                fix = (
                    "plug it in with excepthub_fastapi.middleware(exc), "
                    "excepthub_faststream.middleware(exc) or excepthub_fastmcp.middleware(exc), "
                    "and hand errors to it with `await exc.handle(error)`"
                )
            raise TypeError(
                f"an excepthub.ExceptionMiddleware is a registry, not a middleware: {fix}"
            )

    # -- resolution ---------------------------------------------------------------------

    def resolve(
        self,
        exc_type: type[BaseException],
        *,
        defaults: Defaults | None = None,
        publish: bool = True,
    ) -> Resolution | None:
        """Which handler an exception of class `exc_type` would reach, or `None`.

        For an exception group class, only handlers keyed on group classes count: its leaves
        are resolved one by one when `handle` takes the group apart. `publish=False` leaves
        the fallback handlers out, as `handle(..., publish=False)` does.
        """
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TypeError(f"resolve() takes an exception class, got {safe_repr(exc_type)}")
        routes = self._routes(self._tables(defaults, publish), exc_type)
        match = routes.publish or routes.general
        return None if match is None else match.resolution

    def _tables(self, defaults: Defaults | None, publish: bool = True) -> _Tables:
        state = self._state
        tables = (state.layers if publish else state.side_effect_only).get(defaults)
        if tables is None:
            tables = self._layer(state, defaults) if publish else self._side_effect_tables(defaults)
        return tables

    def _layer(self, state: _State, defaults: Defaults | None) -> _Tables:
        if defaults is None:
            return state.base
        with self._lock:
            if defaults not in self._defaults:
                self._defaults[defaults] = (
                    self._compile_map(defaults.publish_handlers),
                    self._compile_map(defaults.handlers),
                )
            publish, general = self._defaults[defaults]
            user_publish, user_general = state.base.publish, state.base.general
            supplied = defaults.supplies
            if supplied is not None:  # a handler runs only where its parameters can be filled
                user_publish = {k: h for k, h in user_publish.items() if h.fillable(supplied)}
                user_general = {k: h for k, h in user_general.items() if h.fillable(supplied)}
            mine = user_publish.keys() | user_general.keys()  # a user key replaces both
            tables = _Tables(
                {k: h for k, h in publish.items() if k not in mine} | user_publish,
                {k: h for k, h in general.items() if k not in mine} | user_general,
                logs_unhandled=not defaults.logs_unhandled,
                users=state.base.users,
                framework=defaults.framework,
            )
            return state.layers.setdefault(defaults, tables)

    def _side_effect_tables(self, defaults: Defaults | None) -> _Tables:
        """The layering without its fallback handlers, with a memo of its own."""
        state = self._state
        layer = state.layers.get(defaults) or self._layer(state, defaults)
        tables = _Tables(
            {},
            layer.general,
            logs_unhandled=layer.logs_unhandled,
            users=layer.users,
            framework=layer.framework,
        )
        return state.side_effect_only.setdefault(defaults, tables)

    def _routes(self, tables: _Tables, cls: type[BaseException]) -> _Routes:
        return tables.memo.get(cls) or self._remember(tables, cls)

    def _remember(self, tables: _Tables, cls: type[BaseException]) -> _Routes:
        routes = _walk(cls, tables)
        with self._lock:  # filling is rare; the lock keeps eviction safe across threads
            if len(tables.memo) >= MEMO_SIZE:
                del tables.memo[next(iter(tables.memo))]
            tables.memo[cls] = routes
        return routes

    # -- handling -----------------------------------------------------------------------

    def handle(
        self,
        error: BaseException,
        /,
        *,
        defaults: Defaults | None = None,
        publish: bool = True,
        convert: Callable[[Any, BaseException], Any] | None = None,
        **context: Any,
    ) -> Coroutine[Any, Any, Outcome]:
        """Hand `error` to its handler: await it for the `Outcome`, or for `error` re-raised.

        `context` holds the values handlers may ask for by name or with `Context` (adapters
        pass the request, the message, the MCP context, and `correlation_id`). With no
        handler, the same exception object propagates; a `BaseException` that is not an
        `Exception` (cancellation) always propagates. Exception groups are taken apart leaf
        by leaf, like `except*`. `publish=False` is for errors that have no result to replace
        (FastStream's parser errors): only side-effect handlers are asked.

        `convert(value, error)` (sync or async) is how an adapter turns a fallback value into
        what its framework sends (a tool result checked against its output schema, JSON). If it
        raises, the value could not be sent: the error counts as `failed`, is logged once with
        what went wrong, and the outcome is that of a handled error (the masked answer).

        A plain function that hands back the coroutine doing the work (nothing happens until
        it is awaited): the error path of every failed request or message, one coroutine
        fewer than an `async def` calling it.
        """
        state = self._state
        tables = (state.layers if publish else state.side_effect_only).get(defaults)
        if tables is None:
            tables = self._tables(defaults, publish)
        if isinstance(error, BaseExceptionGroup):
            return self._handle_group(error, tables, context, convert)
        if isinstance(error, Exception):
            return self._handle_one(error, tables, context, convert)
        if isinstance(error, BaseException):
            return _raising(error)
        raise TypeError(
            f"handle() takes the exception to handle, got {safe_repr(error)}: pass the "
            "exception object itself (`except Exception as error: await exc.handle(error)`)"
        )

    async def call_with_retries(self, work: Callable[[], Awaitable[_T]], /, **context: Any) -> _T:
        """Run `work()`, again while it fails with a transient error and attempts remain.

        Adapters wrap the unit of work in it when the registry has a `retry` policy; each
        retry is logged and counted as `retried`. The last error propagates to the handlers.
        """
        policy = self.retry
        if policy is None:
            return await work()
        attempt = 1
        while True:
            try:
                return await work()
            except Exception as error:
                if attempt >= policy.attempts or not policy.is_transient(error):
                    raise
                detail = f" (attempt {attempt} of {policy.attempts})"
                await self._report("retried", error, None, context, None, detail)
            await policy.sleep(policy.delay(attempt))
            attempt += 1

    def logs(self, outcome: OutcomeKind) -> bool:
        """Whether this registry writes an error with that outcome to its log (per `logger`
        and `log_levels`): an adapter asks before keeping its framework from logging the same
        error a second time."""
        return self._observer.logs(outcome)

    def get_error_stats(self) -> dict[str, dict[str, int]]:
        """Counts per exception class and outcome: `{"ValueError": {"published": 2}}`."""
        return self._observer.stats()

    def reset_error_stats(self) -> None:
        """Start counting from zero."""
        self._observer.reset()

    def _handle_one(
        self,
        error: Exception,
        tables: _Tables,
        context: Mapping[str, Any],
        convert: Callable[[Any, BaseException], Any] | None = None,
    ) -> Coroutine[Any, Any, Outcome]:
        # not a coroutine itself: it hands back the one to await, a frame fewer on the error path
        cls = type(error)
        routes = tables.memo.get(cls) or self._remember(tables, cls)
        # `publish` and `convert` passed by position: keywords cost a coroutine's creation more
        if (match := routes.publish) is not None:
            return self._run(match.handler, error, tables, context, True, convert)
        if (match := routes.general) is not None:
            return self._run(match.handler, error, tables, context, False)
        return self._unhandled(error, tables, context)

    async def _unhandled(
        self, error: Exception, tables: _Tables, context: Mapping[str, Any]
    ) -> NoReturn:
        await self._report("unhandled", error, None, context, tables, log=tables.logs_unhandled)
        _propagate(error)

    async def _handle_group(
        self,
        group: BaseExceptionGroup[BaseException],
        tables: _Tables,
        context: Mapping[str, Any],
        convert: Callable[[Any, BaseException], Any] | None,
    ) -> Outcome:
        routes = self._routes(tables, type(group))  # handlers keyed on group classes
        if (match := routes.publish or routes.general) is not None and isinstance(group, Exception):
            publish = match is routes.publish
            return await self._run(
                match.handler, group, tables, context, publish=publish, convert=convert
            )
        if not any(self._takes(tables, leaf) for leaf in leaves(group)):
            for each in leaves(group):  # counted per leaf, as when a group is taken apart
                if isinstance(each, Exception):
                    await self._report(
                        "unhandled", each, None, context, tables, log=tables.logs_unhandled
                    )
            _propagate(group)  # no handler of the user's takes a leaf: it goes on as it came
        leaf = only_leaf(group)
        if leaf is not None:  # a group of one leaf behaves exactly as that leaf
            if isinstance(leaf, Exception):
                run = self._handle_one(leaf, tables, context, convert)
                outcome = await _unless_let_through(run, leaf)
                if outcome is not None:
                    return outcome
            _propagate(group)  # not taken: the group goes on as it came
        published: Outcome | None = None
        first: Outcome | None = None
        unhandled: list[BaseException] = []
        failures: list[Exception] = []
        for leaf in leaves(group):
            outcome = None
            if isinstance(leaf, Exception):
                routes = self._routes(tables, type(leaf))
                if routes.publish is not None and published is None:
                    run = self._run(
                        routes.publish.handler, leaf, tables, context, publish=True, convert=convert
                    )
                elif (match := routes.general or routes.publish) is not None:
                    run = self._run(match.handler, leaf, tables, context, publish=False)
                else:
                    run = self._unhandled(leaf, tables, context)
                try:
                    outcome = await _unless_let_through(run, leaf)
                except Exception as failure:  # like except*: the other leaves still go to theirs
                    failures.append(failure)
                    continue
            if outcome is None:
                unhandled.append(leaf)
            elif outcome.published:
                published = outcome
            elif first is None:
                first = outcome
        if failures:  # as except* raises them: alone, or grouped with the leaves nobody took
            rest = remainder(group, {id(leaf) for leaf in unhandled}) if unhandled else None
            if rest is None and len(failures) == 1:
                raise failures[0]
            raise BaseExceptionGroup("", [*failures, *([rest] if rest is not None else [])])
        handled = published or first
        if handled is None:
            _propagate(group)
        if unhandled:
            rest = remainder(group, {id(leaf) for leaf in unhandled})
            assert rest is not None
            raise rest
        return Outcome(handled.published, handled.value, handled.handler, group)

    async def _run(
        self,
        handler: Handler,
        error: Exception,
        tables: _Tables,
        context: Mapping[str, Any],
        publish: bool,
        convert: Callable[[Any, BaseException], Any] | None = None,
    ) -> Outcome:
        """Call `handler` for `error`: its `Outcome`, or `error` raised on unchanged when the
        handler lets it through (a pass-through, or a handler that re-raised it)."""
        if handler.func is reraise:  # let through, as if excepthub were not there
            _propagate(error)
        traceback = error.__traceback__
        alone = handler.alone  # the common handler, called without a wrapper on the way
        observer = self._observer
        started = perf_counter() if observer.hooks else 0.0  # the clock is for hooks alone
        try:
            value = await (handler.invoke(error, context) if alone is None else alone(error))
        except Exception as failure:  # cancellation passes straight through, uncounted
            took = perf_counter() - started if started else None
            if failure is error:  # re-raised: unhandled, with the traceback it came with
                error.__traceback__ = traceback
                await self._report(
                    "unhandled",
                    error,
                    handler.func,
                    context,
                    tables,
                    log=tables.logs_unhandled,
                    duration=took,
                )
                _propagate(error)
            _chain(failure, error)
            # raising what the framework lets through (FastStream's NackMessage) is steering
            steered = self._passes_through(tables, failure)
            kind: OutcomeKind = "handled" if steered else "failed"
            await self._report(kind, error, handler.func, context, tables, duration=took)
            raise
        if publish:
            if convert is not None:
                try:
                    value = convert(value, error)
                    if inspect.iscoroutine(value):
                        value = await value
                except Exception as failure:  # it cannot be sent: failed, and answered masked
                    _chain(failure, error)
                    detail = f": its value could not be sent ({type(failure).__name__}: {failure})"
                    await self._report(
                        "failed",
                        error,
                        handler.func,
                        context,
                        tables,
                        detail,
                        shown=failure,
                        duration=perf_counter() - started if started else None,
                    )
                    return _new_outcome(Outcome, (False, None, handler.func, error))
        elif value is not None and handler.drops_values:
            warn_dropped(handler, error, value)
        kind = "published" if publish else "handled"
        # the hot path: count and log without another coroutine
        observer.record(kind, error, handler.func, context)
        if observer.hooks:
            took = perf_counter() - started if started else None
            await observer.notify(kind, error, handler.func, context, tables.framework, took)
        # tuple.__new__ directly: NamedTuple's own __new__ is a Python-level call
        return _new_outcome(Outcome, (publish, value if publish else None, handler.func, error))

    def _takes(self, tables: _Tables, leaf: BaseException) -> bool:
        """Whether a handler of the user's (not a framework default, not a pass-through) would
        take this leaf of a group."""
        if not isinstance(leaf, Exception):
            return False
        routes = self._routes(tables, type(leaf))
        match = routes.publish or routes.general
        return (
            match is not None
            and match.handler in tables.users
            and match.handler.func is not reraise
        )

    def _passes_through(self, tables: _Tables, error: Exception) -> bool:
        routes = self._routes(tables, type(error))
        match = routes.publish or routes.general
        return match is not None and match.handler.func is reraise

    async def _report(
        self,
        kind: OutcomeKind,
        error: BaseException,
        handler: Callable[..., Any] | None,
        context: Mapping[str, Any],
        tables: _Tables | None = None,
        detail: str = "",
        *,
        log: bool = True,
        shown: BaseException | None = None,
        duration: float | None = None,
    ) -> None:
        self._observer.record(kind, error, handler, context, detail, log=log, shown=shown)
        if self._observer.hooks:
            framework = None if tables is None else tables.framework
            await self._observer.notify(kind, error, handler, context, framework, duration)


def _walk(cls: type[BaseException], tables: _Tables) -> _Routes:
    """The uncached rule: the nearest class in the MRO, for each map.

    A pass-through (`reraise`) resolves by MRO position alone, whichever map holds it: it beats
    a farther handler of either kind and loses to a nearer one, so that a framework's
    `reraise` default on a base class never shadows the user's handler for a subclass.
    """
    group_only = issubclass(cls, BaseExceptionGroup)
    publish = general = None
    publish_at = general_at = 0
    for at, klass in enumerate(cls.__mro__):
        if group_only and not issubclass(klass, BaseExceptionGroup):
            continue
        if publish is None and (handler := tables.publish.get(klass)) is not None:
            publish, publish_at = _Match(handler, Resolution(handler.func, True, klass)), at
        if general is None and (handler := tables.general.get(klass)) is not None:
            general, general_at = _Match(handler, Resolution(handler.func, False, klass)), at
    if publish is None or general is None:
        return _Routes(publish, general)
    if reraise not in (publish.handler.func, general.handler.func):
        return _Routes(publish, general)
    return _Routes(None, general) if general_at < publish_at else _Routes(publish, None)


async def _unless_let_through(run: Awaitable[Outcome], leaf: Exception) -> Outcome | None:
    """Await the handling of one leaf of a group: its `Outcome`, or `None` when the leaf went
    on unhandled (with the traceback it came with: it goes on inside its group)."""
    traceback = leaf.__traceback__
    try:
        return await run
    except Exception as failure:
        if failure is not leaf:
            raise
        leaf.__traceback__ = traceback
        return None


async def _raising(error: BaseException) -> NoReturn:
    _propagate(error)


def _propagate(error: BaseException) -> NoReturn:
    """Raise `error` unchanged. A bare `raise error` inside the caller's `except` block would
    set its `__context__` to the exception being handled there, which may be a wrapper whose
    `__cause__` is `error` itself: a cycle that traceback printers never leave."""
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context


def _chain(failure: BaseException, original: BaseException) -> None:
    """Make `original` reachable from `failure` through `__context__` (a handler that ran in a
    worker thread, or outside an `except` block, raised without Python chaining it)."""
    seen = {id(failure)}
    tail = failure
    while tail.__context__ is not None:
        if tail.__context__ is original or id(tail.__context__) in seen:
            return
        tail = tail.__context__
        seen.add(id(tail))
    if tail is not original:
        tail.__context__ = original


def _keys(exc: object) -> tuple[type[Exception], ...]:
    keys = exc if isinstance(exc, tuple) else (exc,)
    if not keys:
        raise TypeError("cannot register a handler for an empty tuple of exception classes")
    for key in keys:
        _check_key(key)
    return keys


def _check_key(key: object) -> None:
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


def _flatten(handlers: object, where: str) -> dict[type[Exception], Callable[..., Any]]:
    """`{key_or_tuple: handler}` as `{class: handler}`, checked; `TypeError` names the culprit."""
    if handlers is None:
        return {}
    if not isinstance(handlers, Mapping):
        raise TypeError(f"{where} must be a mapping of exception classes to handlers")
    flat: dict[type[Exception], Callable[..., Any]] = {}
    for key, func in handlers.items():
        try:
            keys = _keys(key)
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
