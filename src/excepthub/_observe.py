"""Observation: every error that reaches a registry is counted, logged once, and shown to hooks."""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ._outcome import ErrorEvent, OutcomeKind

__all__ = ["DEFAULT_LOG_LEVELS", "ErrorHook", "Observer"]

ErrorHook = Callable[[ErrorEvent], Any]
"""An `on_error` hook: sync or async, called with every `ErrorEvent`."""

DEFAULT_LOG_LEVELS: Final[Mapping[OutcomeKind, int]] = {
    "published": logging.INFO,
    "handled": logging.WARNING,
    "retried": logging.WARNING,
    "unhandled": logging.ERROR,
    "failed": logging.ERROR,
}
_TRACEBACK_FOR: Final = frozenset({"unhandled", "failed"})


class Observer:
    """A registry's counters, log and hooks. Thread-safe: frameworks may share a registry."""

    __slots__ = ("_levels", "_lock", "_logger", "_stats", "hooks")

    def __init__(
        self,
        *,
        logger: logging.Logger | str | None,
        log_levels: Mapping[OutcomeKind, int | None] | None,
        hooks: Iterable[ErrorHook],
    ) -> None:
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger, a name or None, got {logger!r}")
        levels: dict[str, int | None] = dict(DEFAULT_LOG_LEVELS.items())
        for kind, level in (log_levels or {}).items():
            if kind not in DEFAULT_LOG_LEVELS:
                raise TypeError(f"log_levels: unknown outcome {kind!r}; one of {[*levels]}")
            if level is not None and not isinstance(level, int):
                raise TypeError(f"log_levels[{kind!r}] must be a logging level or None")
            levels[kind] = level
        self._logger = logger
        self._levels = levels
        self.hooks: tuple[ErrorHook, ...] = ()
        self._lock = threading.Lock()
        # one counter per (class name, outcome): `next()` on an itertools.count is atomic
        # under the GIL, so counting needs no lock on the error path
        self._stats: dict[tuple[str, str], itertools.count[int]] = {}
        for hook in hooks:
            self.add_hook(hook)

    def add_hook(self, hook: ErrorHook) -> None:
        if not callable(hook):
            raise TypeError(f"on_error hook {hook!r} is not callable")
        with self._lock:
            self.hooks = (*self.hooks, hook)

    def remove_hook(self, hook: ErrorHook) -> None:
        """Take back one `add_hook` of `hook` (the last); nothing if it is not there."""
        with self._lock:
            at = next((i for i in reversed(range(len(self.hooks))) if self.hooks[i] is hook), None)
            if at is not None:
                self.hooks = (*self.hooks[:at], *self.hooks[at + 1 :])

    def stats(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (name, kind), counter in list(self._stats.items()):
            table.setdefault(name, {})[kind] = _value(counter)
        return table

    def reset(self) -> None:
        self._stats = {}

    def logs(self, kind: OutcomeKind) -> bool:
        """Whether an outcome of this kind is written to the log now."""
        level = self._levels[kind]
        return self._logger is not None and level is not None and self._logger.isEnabledFor(level)

    def record(
        self,
        kind: OutcomeKind,
        error: BaseException,
        handler: Callable[..., Any] | None,
        context: Mapping[str, Any],
        detail: str = "",
        *,
        log: bool = True,
        shown: BaseException | None = None,
    ) -> None:
        """Count and log one error's outcome (`log=False`: count only, the framework logs it);
        `shown` is the exception whose traceback the record carries, if not `error`'s. The
        caller awaits `notify` when there are hooks."""
        # The hot path of every error: subscripts, not `.get()` (a method call costs about three
        # times as much), with the rare miss in `except`, which costs nothing when not taken.
        cls = type(error)
        try:
            key = (_NAMES[cls], kind)
        except KeyError:
            key = (_name_of(cls), kind)
        stats = self._stats
        try:
            counter = stats[key]
        except KeyError:
            counter = stats.setdefault(key, itertools.count(1))
        next(counter)
        if log and self._logger is not None and (level := self._levels[kind]) is not None:
            self._log(level, kind, error, handler, context, detail, shown)

    def _log(
        self,
        level: int,
        kind: OutcomeKind,
        error: BaseException,
        handler: Callable[..., Any] | None,
        context: Mapping[str, Any],
        detail: str,
        shown: BaseException | None = None,
    ) -> None:
        assert self._logger is not None
        if not self._logger.isEnabledFor(level):
            return
        name = _class_name(type(error))
        by = f" by {_handler_name(handler)}" if handler is not None else ""
        correlation_id = context.get("correlation_id")
        where = f" [correlation_id={correlation_id}]" if correlation_id is not None else ""
        self._logger.log(
            level,
            "%s %s%s%s%s",
            name,
            kind,
            by,
            detail,
            where,
            exc_info=(shown or error) if kind in _TRACEBACK_FOR else None,
            extra={
                "excepthub_outcome": kind,
                "excepthub_exception": name,
                "excepthub_handler": _handler_name(handler) if handler is not None else None,
                "correlation_id": correlation_id,
            },
        )

    async def notify(
        self,
        kind: OutcomeKind,
        error: BaseException,
        handler: Callable[..., Any] | None,
        context: Mapping[str, Any],
        framework: str | None = None,
        duration: float | None = None,
        declined: tuple[Callable[..., Any], ...] = (),
    ) -> None:
        """Show one error's outcome to every hook, in order."""
        event = ErrorEvent(error, kind, handler, context, framework, duration, declined)
        for hook in self.hooks:
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a hook observes; it never changes the outcome
                (self._logger or logging.getLogger("excepthub")).exception(
                    "on_error hook %s failed", _handler_name(hook)
                )


def _value(counter: itertools.count[int]) -> int:
    """How many times `next` was called on a counter started at 1: `repr` is `count(n + 1)`."""
    return int(repr(counter)[6:-1]) - 1


def _qualified_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


_NAMES: dict[type[BaseException], str] = {}
"""Class names for the stats, cached; emptied past 1,024 so runtime-made classes are not kept."""


def _name_of(cls: type[BaseException]) -> str:
    if len(_NAMES) >= 1024:
        _NAMES.clear()
    name = _NAMES[cls] = _qualified_name(cls)
    return name


def _class_name(cls: type[BaseException]) -> str:
    return _NAMES.get(cls) or _name_of(cls)


def _handler_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
