"""The registry: registration, resolution, handling, in that order.

Readers take one immutable snapshot (`_State`) per call and registration swaps in a new one,
so a registration made on another thread is served whole or not at all, and never stale
once `add_handler` has returned.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from time import perf_counter
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    NoReturn,
    TypeVar,
    cast,
    overload,
)

from fast_depends import Provider

from ._candidates import (
    Candidate,
    Decline,
    Entry,
    Route,
    check_condition,
    holds_quietly,
    layered,
    route,
    truth,
)
from ._defaults import FRAMEWORKS, Defaults, ExceptionKey, HandlerMap, flatten, keys_of
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
)
from ._retry import RedeliveryUnsupported, Retry

__all__ = ["MEMO_SIZE", "ExceptionMiddleware"]

_F = TypeVar("_F", bound=Callable[..., Any])
_E = TypeVar("_E", bound=Exception)
_SideEffect = TypeVar("_SideEffect", bound=Callable[..., Awaitable[None] | None])
_T = TypeVar("_T")

_new_outcome: Final = tuple.__new__

MEMO_SIZE: Final = 1024
"""How many exception classes one memo remembers; the oldest is forgotten first."""


_Entries = dict[type, tuple[Entry, ...]]
"""Registrations by class, each class's in the order asked (conditional ones, then the other)."""


class _Tables:
    """The maps one layering resolves over, and its memo of each class's candidates."""

    __slots__ = ("framework", "general", "logs_unhandled", "memo", "publish", "users")

    def __init__(
        self,
        publish: _Entries,
        general: _Entries,
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
        if users is None:
            users = frozenset(
                e.handler for t in (publish, general) for es in t.values() for e in es
            )
        self.users = users
        self.memo: dict[type, Route] = {}


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
        self._compiled: dict[bool, _Entries] = {True: {}, False: {}}
        self._defaults: dict[Defaults, tuple[dict[type, Handler], dict[type, Handler]]] = {}
        self._state = _State(_Tables({}, {}))
        self._plugged: tuple[Defaults, ...] = ()  # the frameworks it serves, by their defaults
        self._warned: set[tuple[type, type]] = set()  # shadowed pairs warned about already
        entries = [
            *self._compile(flatten(publish_handlers, "publish_handlers"), publish=True),
            *self._compile(flatten(handlers, "handlers"), publish=False),
        ]
        self._register(entries)
        for framework in self.serves:
            self.plug_in(framework)

    # -- registration -------------------------------------------------------------------

    @overload
    def add_handler(
        self,
        exc: type[_E] | tuple[type[_E], ...],
        publish: Literal[False] = False,
        *,
        inline: bool | None = None,
        when: Callable[[_E], bool] | None = None,
    ) -> Callable[[_SideEffect], _SideEffect]: ...

    @overload
    def add_handler(
        self,
        exc: type[_E] | tuple[type[_E], ...],
        publish: Literal[True],
        *,
        inline: bool | None = None,
        when: Callable[[_E], bool] | None = None,
    ) -> Callable[[_F], _F]: ...

    @overload
    def add_handler(
        self,
        exc: type[_E] | tuple[type[_E], ...],
        publish: bool,
        *,
        inline: bool | None = None,
        when: Callable[[_E], bool] | None = None,
    ) -> Callable[[_F], _F]: ...

    def add_handler(
        self,
        exc: ExceptionKey,
        publish: bool = False,
        *,
        inline: bool | None = None,
        when: Callable[[Any], bool] | None = None,
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

        `when` (a plain function of the error) makes the registration conditional: it is asked
        only when `when(error)` is true, else the error goes to the next candidate. A class
        may have several conditional registrations, asked in registration order before its
        unconditional one (which a new unconditional registration replaces).
        """
        keys = keys_of(exc)
        if when is not None:
            check_condition(when, f"add_handler({safe_repr(exc)})")
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
            self._register([(key, Entry(handler, when, publish)) for key in keys])
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
        """The unconditional side-effect handlers registered, read-only (`registrations()`
        lists the conditional ones too)."""
        return MappingProxyType(self._user[False])

    @property
    def publish_handlers(self) -> Mapping[type[Exception], Callable[..., Any]]:
        """The unconditional fallback handlers registered, read-only (`registrations()` lists
        the conditional ones too)."""
        return MappingProxyType(self._user[True])

    def registrations(self) -> tuple[Resolution, ...]:
        """Every registration of the user's: class (`key`), handler, `publish` and `condition`.

        Fallback handlers first, then side-effect handlers; for each class in the order asked
        (its conditional registrations in registration order, then its unconditional one).
        Together with the order of candidates (the Concepts page) it is all `handle` goes by.
        """
        compiled = self._compiled
        return tuple(
            Resolution(e.handler.func, publish, key, e.condition)
            for publish in (True, False)
            for key, entries in compiled[publish].items()
            for e in entries
        )

    def _snapshot(self) -> object:
        """Every registration, opaque: `_restore` puts them back (for test overrides)."""
        with self._lock:  # the maps are replaced, never changed in place: references suffice
            return (self._compiled, self._user, set(self._warned))

    def _restore(self, snapshot: object) -> None:
        """Put back the registrations of a `_snapshot`; every memo starts afresh."""
        compiled, user, warned = cast(
            tuple[dict[bool, _Entries], dict[bool, dict[Any, Any]], set[Any]], snapshot
        )
        with self._lock:
            self._compiled, self._user, self._warned = compiled, user, set(warned)
            self._state = _State(_Tables(compiled[True], compiled[False]))

    def _compile(
        self, funcs: Mapping[type[Exception], Callable[..., Any]], *, publish: bool | None
    ) -> list[tuple[type[Exception], Entry]]:
        compiled: dict[int, Handler] = {}  # one Handler per function, shared by its keys
        entries = []
        for key, func in funcs.items():
            handler = compiled.get(id(func)) or self._compile_one(func, (key,), None, publish)
            compiled[id(func)] = handler
            entries.append((key, Entry(handler, None, bool(publish))))
        return entries

    def _compile_map(
        self, funcs: Mapping[type[Exception], Callable[..., Any]]
    ) -> dict[type, Handler]:
        return {key: entry.handler for key, entry in self._compile(funcs, publish=None)}

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

    def _register(self, entries: list[tuple[type[Exception], Entry]]) -> None:
        with self._lock:
            for key, entry in entries:  # before anything changes: a refusal changes nothing
                check_fillable(entry.handler, key, self._plugged, list(FRAMEWORKS))
            # copied, never changed in place: a snapshot taken before stays as it was
            user = {kind: dict(funcs) for kind, funcs in self._user.items()}
            compiled = {kind: dict(handlers) for kind, handlers in self._compiled.items()}
            for key, entry in entries:
                publish, func, condition = entry.publish, entry.handler.func, entry.condition
                kept = tuple(  # a new unconditional one replaces the old, as the same again does
                    e
                    for e in compiled[publish].get(key, ())
                    if e.condition is not None
                    and (condition is None or (e.handler.func, e.condition) != (func, condition))
                )
                if condition is None:
                    user[publish][key] = func
                    compiled[publish][key] = (*kept, entry)
                else:  # before the unconditional one, after the conditional ones so far
                    last = compiled[publish].get(key, ())[-1:]
                    last = last if last and last[0].condition is None else ()
                    compiled[publish][key] = (*kept, entry, *last)
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
            candidates = route(cls, tables.publish, tables.general).candidates
            return next(
                (c.resolution for c in candidates if c.condition is None and c.publish), None
            )

        side_effects = [
            (key, e.handler) for key, es in tables.general.items() for e in es if not e.publish
        ]
        return shadowed(side_effects, nearest_fallback)

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
                for key, entries in self._compiled[publish].items():
                    for entry in entries:
                        check_fillable(entry.handler, key, plugged, list(FRAMEWORKS))
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
        error: BaseException | type[BaseException],
        *,
        defaults: Defaults | None = None,
        publish: bool = True,
    ) -> Resolution | None:
        """Which handler an exception would reach, or `None`.

        Given the exception itself, the conditions are evaluated: the answer is the handler
        that `handle` would call first (one whose condition raises counts as not holding; a
        handler may still decline when it runs). Given a class, no condition can be: the
        answer is its first unconditional candidate, the handler every error of the class
        reaches when no condition before it holds (`candidates` lists them all).

        For an exception group, only handlers keyed on group classes count: its leaves are
        resolved one by one when `handle` takes the group apart. `publish=False` leaves the
        fallback handlers out, as `handle(..., publish=False)` does.
        """
        found = self._route(self._tables(defaults, publish), _class_of(error, "resolve"))
        if isinstance(error, type):
            return None if found.certain is None else found.certain.resolution
        for candidate in found.candidates:
            if candidate.condition is None or holds_quietly(candidate.condition, error):
                return candidate.resolution
        return None

    def candidates(
        self,
        error: BaseException | type[BaseException],
        *,
        defaults: Defaults | None = None,
        publish: bool = True,
    ) -> tuple[Resolution, ...]:
        """Every registration an exception (or a class of them) may reach, in the order asked.

        Conditions are not evaluated: each `Resolution` carries its own. The list ends at an
        unconditional pass-through (`reraise`), past which nothing is asked. `defaults` and
        `publish` as for `resolve`.

        ```python
        assert [r.handler for r in exc.candidates(KeyError)] == [fallback, log_missing]
        ```
        """
        found = self._route(self._tables(defaults, publish), _class_of(error, "candidates"))
        return tuple(candidate.resolution for candidate in found.candidates)

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
            tables = _Tables(
                *layered(
                    state.base.publish, state.base.general, publish, general, defaults.supplies
                ),
                logs_unhandled=not defaults.logs_unhandled,
                users=state.base.users,
                framework=defaults.framework,
            )
            return state.layers.setdefault(defaults, tables)

    def _side_effect_tables(self, defaults: Defaults | None) -> _Tables:
        """The layering without its fallback handlers, with a memo of its own."""
        state = self._state
        layer = state.layers.get(defaults) or self._layer(state, defaults)
        moved = {k: tuple(e for e in es if not e.publish) for k, es in layer.publish.items()}
        tables = _Tables(
            {},
            {k: (*moved.get(k, ()), *layer.general.get(k, ())) for k in moved | layer.general},
            logs_unhandled=layer.logs_unhandled,
            users=layer.users,
            framework=layer.framework,
        )
        return state.side_effect_only.setdefault(defaults, tables)

    def _route(self, tables: _Tables, cls: type[BaseException]) -> Route:
        return tables.memo.get(cls) or self._remember(tables, cls)

    def _remember(self, tables: _Tables, cls: type[BaseException]) -> Route:
        found = route(cls, tables.publish, tables.general)
        with self._lock:  # filling is rare; the lock keeps eviction safe across threads
            if len(tables.memo) >= MEMO_SIZE:
                del tables.memo[next(iter(tables.memo))]
            tables.memo[cls] = found
        return found

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
        # Subscripts, not `.get()`, on this path of every error (see `Observer.record`).
        state = self._state
        try:
            tables = (state.layers if publish else state.side_effect_only)[defaults]
        except KeyError:
            tables = self._tables(defaults, publish)
        # The common case first, a frame fewer on every error: a class the memo knows, whose
        # first candidate has no condition.
        try:
            first = tables.memo[type(error)].first
        except KeyError:
            first = None
        if first is not None and isinstance(error, Exception):
            return self._run(first, error, tables, context, convert)
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
        A policy with `through_broker=True` is refused with `RedeliveryUnsupported` before
        `work` runs: it gives work back to a broker, never retries it in the process.
        """
        policy = self.retry
        if policy is None:
            return await work()
        if policy.through_broker:
            raise RedeliveryUnsupported(
                "Retry(through_broker=True) gives a failed message back to its broker, and "
                "this work has none (only FastStream's adapter does): give it a registry whose "
                "policy has through_broker=False, e.g. dataclasses.replace(policy, "
                "through_broker=False), to retry in the process"
            )
        attempt = 1
        while True:
            try:
                return await work()
            except Exception as error:
                if attempt >= policy.attempts or not policy.is_transient(error):
                    raise
                await self.record_retry(error, attempt, **context)
            await policy.sleep(policy.delay(attempt))
            attempt += 1

    async def record_retry(self, error: Exception, attempt: int, /, **context: Any) -> None:
        """Log and count `error` as `retried`: attempt number `attempt` (1 for the first run)
        failed with it, and the work will run again.

        `call_with_retries` records its own retries; an adapter that retries another way
        records each one with this, as the FastStream adapter does when it gives a message
        back to its broker. The record reads `(attempt n of N)`, with `given back to the
        broker` under `Retry(through_broker=True)`; hooks see the outcome `retried`.
        `context` as for `handle`. It needs the registry's `retry` policy.

        ```python
        await exc.record_retry(error, 2, correlation_id="c-7")
        ```
        """
        policy = self.retry
        if policy is None:
            raise RuntimeError(
                "record_retry() counts an attempt of the registry's retry policy, and this "
                "registry has none: build it with ExceptionMiddleware(retry=Retry(...))"
            )
        if not isinstance(attempt, int) or isinstance(attempt, bool):
            raise TypeError(f"record_retry(): attempt must be an int, got {safe_repr(attempt)}")
        if attempt < 1:
            raise ValueError(f"record_retry(): attempt counts from 1, got {attempt}")
        how = ", given back to the broker" if policy.through_broker else ""
        detail = f" (attempt {attempt} of {policy.attempts}{how})"
        await self._report("retried", error, None, context, None, detail)

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
        found = tables.memo.get(cls) or self._remember(tables, cls)
        # `convert` passed by position: keywords cost a coroutine's creation more
        if (first := found.first) is not None:  # no condition to evaluate: called straight away
            return self._run(first, error, tables, context, convert)
        if found.candidates:
            return self._ask(found.candidates, error, tables, context, convert)
        return self._unhandled(error, tables, context)

    async def _ask(
        self,
        candidates: tuple[Candidate, ...],
        error: Exception,
        tables: _Tables,
        context: Mapping[str, Any],
        convert: Callable[[Any, BaseException], Any] | None = None,
        declined: tuple[Callable[..., Any], ...] = (),
    ) -> Outcome:
        """Ask `candidates` in order, evaluating conditions, until one takes `error`; when none
        is left, the error goes on as if nothing were registered (a group is taken apart)."""
        for candidate in candidates:
            if candidate.condition is None or await self._holds(candidate, error, context, tables):
                return await self._run(candidate, error, tables, context, convert, declined)
            declined = (*declined, candidate.handler.func)
        if isinstance(error, BaseExceptionGroup):
            return await self._take_apart(error, tables, context, convert)
        return await self._unhandled(error, tables, context, declined)

    async def _holds(
        self, candidate: Candidate, error: Exception, context: Mapping[str, Any], tables: _Tables
    ) -> bool:
        """Whether a candidate's condition holds; one that raises is a failure of that
        registration: logged and counted (as its own exception, `failed`), and it does not."""
        condition = candidate.condition
        assert condition is not None
        try:
            return truth(condition(error))
        except Decline:
            return False
        except Exception as failure:
            _chain(failure, error)
            detail = (
                f": the condition of {candidate.handler.name} for "
                f"{type(error).__qualname__} raised; the error goes on to the next candidate"
            )
            await self._report("failed", failure, condition, context, tables, detail)
            return False

    async def _unhandled(
        self,
        error: Exception,
        tables: _Tables,
        context: Mapping[str, Any],
        declined: tuple[Callable[..., Any], ...] = (),
    ) -> NoReturn:
        await self._report(
            "unhandled", error, None, context, tables, log=tables.logs_unhandled, declined=declined
        )
        _propagate(error)

    async def _handle_group(
        self,
        group: BaseExceptionGroup[BaseException],
        tables: _Tables,
        context: Mapping[str, Any],
        convert: Callable[[Any, BaseException], Any] | None,
    ) -> Outcome:
        found = self._route(tables, type(group))  # handlers keyed on group classes
        if found.candidates and isinstance(group, Exception):
            return await self._ask(found.candidates, group, tables, context, convert)
        return await self._take_apart(group, tables, context, convert)

    async def _take_apart(
        self,
        group: BaseExceptionGroup[BaseException],
        tables: _Tables,
        context: Mapping[str, Any],
        convert: Callable[[Any, BaseException], Any] | None,
    ) -> Outcome:
        """Each leaf to its candidates, like `except*` (DESIGN rule 6)."""
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
                found = self._route(tables, type(leaf))
                # one fallback value at most: after it, the others' values are set aside
                ordered = found.candidates if published is None else found.set_aside
                run = self._ask(ordered, leaf, tables, context, convert)
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
        candidate: Candidate,
        error: Exception,
        tables: _Tables,
        context: Mapping[str, Any],
        convert: Callable[[Any, BaseException], Any] | None = None,
        declined: tuple[Callable[..., Any], ...] = (),
    ) -> Outcome:
        """Call the candidate's handler for `error`: its `Outcome`, the next candidate's when
        it declines, or `error` raised on unchanged when the handler lets it through (a
        pass-through, or a handler that re-raised it)."""
        if candidate.passes:  # let through, as if excepthub were not there
            _propagate(error)
        handler = candidate.handler
        publish = candidate.publish
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
                    declined=declined,
                )
                _propagate(error)
            _chain(failure, error)
            # raising what the framework lets through (FastStream's NackMessage) is steering
            steered = self._passes_through(tables, failure)
            kind: OutcomeKind = "handled" if steered else "failed"
            await self._report(
                kind, error, handler.func, context, tables, duration=took, declined=declined
            )
            raise
        except Decline:  # the next candidate's turn; a BaseException: cancellation is not one
            error.__traceback__ = traceback
            declined = (*declined, handler.func)
            return await self._ask(candidate.rest, error, tables, context, convert, declined)
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
                        declined=declined,
                    )
                    return _new_outcome(Outcome, (False, None, handler.func, error))
        elif value is not None and handler.drops_values:
            warn_dropped(handler, error, value)
        kind = "published" if publish else "handled"
        # the hot path: count and log without another coroutine
        observer.record(kind, error, handler.func, context)
        if observer.hooks:
            took = perf_counter() - started if started else None
            await observer.notify(
                kind, error, handler.func, context, tables.framework, took, declined
            )
        # tuple.__new__ directly: NamedTuple's own __new__ is a Python-level call
        return _new_outcome(Outcome, (publish, value if publish else None, handler.func, error))

    def _takes(self, tables: _Tables, leaf: BaseException) -> bool:
        """Whether a handler of the user's (not a framework default, not a pass-through) would
        take this leaf of a group."""
        if not isinstance(leaf, Exception):
            return False
        for candidate in self._route(tables, type(leaf)).candidates:
            if candidate.handler in tables.users and not candidate.passes:
                return True
            if candidate.condition is None:  # what follows is asked only after a decline
                return False
        return False

    def _passes_through(self, tables: _Tables, error: Exception) -> bool:
        certain = self._route(tables, type(error)).certain
        return certain is not None and certain.passes

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
        declined: tuple[Callable[..., Any], ...] = (),
    ) -> None:
        self._observer.record(kind, error, handler, context, detail, log=log, shown=shown)
        if self._observer.hooks:
            framework = None if tables is None else tables.framework
            await self._observer.notify(
                kind, error, handler, context, framework, duration, declined
            )


def _class_of(error: object, where: str) -> type[BaseException]:
    if isinstance(error, BaseException):
        return type(error)
    if isinstance(error, type) and issubclass(error, BaseException):
        return error
    raise TypeError(f"{where}() takes an exception or an exception class, got {safe_repr(error)}")


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
