"""Recording: the error events of a registry while a block runs, as a list a test asserts on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from contextvars import ContextVar, Token
from time import monotonic
from types import TracebackType
from typing import Any, Literal, overload

import anyio

from .._outcome import ErrorEvent, OutcomeKind
from .._registry import ExceptionMiddleware

__all__ = ["Recording", "recording"]

Scope = Literal["task", "registry"]

_ACTIVE: ContextVar[frozenset[Recording]] = ContextVar("excepthub_recordings", default=frozenset())
"""The recordings opened in this context: the task's own, inherited by the tasks it starts."""


class Recording(Sequence[ErrorEvent]):
    """The `ErrorEvent`s a registry reported while `recording(...)` was active, in order.

    A sequence of events, with the questions tests ask:

    ```python
    with recording(exc) as events:
        await exc.handle(CardDeclined())
    assert events.only.handler is payment_failed and events.only.outcome == "published"
    assert events.outcomes == ["published"]
    ```
    """

    def __init__(self, registry: ExceptionMiddleware, scope: Scope = "task") -> None:
        if not isinstance(registry, ExceptionMiddleware):
            raise TypeError(f"recording() takes an excepthub.ExceptionMiddleware, got {registry!r}")
        if scope not in ("task", "registry"):
            raise ValueError(
                f"recording(scope={scope!r}): 'task' records the events of this task and the "
                "tasks it starts; 'registry' every event of the registry, wherever it happens"
            )
        self.registry = registry
        self.scope: Scope = scope
        self._events: list[ErrorEvent] = []
        self._lock = threading.Lock()  # a registry may serve threads (uvicorn in a thread)
        self._token: Token[frozenset[Recording]] | None = None
        self._open = False
        self._record = self._hook  # one bound method: the hook added is the hook taken back

    # -- the events ---------------------------------------------------------------------------

    @overload
    def __getitem__(self, index: int) -> ErrorEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ErrorEvent]: ...

    def __getitem__(self, index: int | slice) -> ErrorEvent | Sequence[ErrorEvent]:
        with self._lock:
            return self._events[index]

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[ErrorEvent]:
        with self._lock:
            return iter(list(self._events))

    def __repr__(self) -> str:
        shown = ", ".join(_summary(e) for e in self)
        return f"<Recording of {len(self)} error event(s): [{shown}]>"

    @property
    def only(self) -> ErrorEvent:
        """The one event recorded; an `AssertionError` listing them if there are not exactly one."""
        events = list(self)
        if len(events) != 1:
            listed = "".join(f"\n  {_summary(e)}" for e in events) or " none"
            raise AssertionError(f"expected exactly one error event, got {len(events)}:{listed}")
        return events[0]

    @property
    def outcomes(self) -> list[OutcomeKind]:
        """The outcome of each event, in order: `["published", "unhandled"]`."""
        return [event.outcome for event in self]

    @property
    def handlers(self) -> list[Callable[..., Any] | None]:
        """The handler that decided each event (`None` where none did), in order."""
        return [event.handler for event in self]

    def of(self, cls: type[BaseException]) -> list[ErrorEvent]:
        """The events of errors that are instances of `cls`."""
        return [event for event in self if isinstance(event.error, cls)]

    def clear(self) -> None:
        """Forget the events recorded so far (the recording goes on)."""
        with self._lock:
            self._events.clear()

    async def wait(self, count: int = 1, *, within: float = 5.0) -> None:
        """Wait until at least `count` events are recorded: for work that ends after the test
        gets its answer (a consumer that acks without replying). `TimeoutError` after `within`
        seconds, naming what was recorded."""
        deadline = monotonic() + within
        while len(self) < count:
            if monotonic() >= deadline:
                raise TimeoutError(f"expected {count} error event(s) within {within} s; {self!r}")
            await anyio.sleep(0.01)  # events may come from another thread: polled, not signalled

    # -- opening and closing --------------------------------------------------------------------

    def __enter__(self) -> Recording:
        if self._open:
            raise RuntimeError("this recording is already active; open a new recording()")
        self._open = True
        if self.scope == "task":
            self._token = _ACTIVE.set(_ACTIVE.get() | {self})
        self.registry._observer.add_hook(self._record)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop recording and take the registry's hook back (what leaving the block does)."""
        if not self._open:
            return
        self._open = False
        self.registry._observer.remove_hook(self._record)
        token, self._token = self._token, None
        if token is not None:
            # closed from another context (a fixture's teardown): the recording is inert anyway
            with suppress(ValueError):
                _ACTIVE.reset(token)

    def _hook(self, event: ErrorEvent) -> None:
        if self._open and (self.scope == "registry" or self in _ACTIVE.get()):
            with self._lock:
                self._events.append(event)


def recording(registry: ExceptionMiddleware, *, scope: Scope = "task") -> Recording:
    """Record the error events of `registry` while the block runs; everything is put back
    when it ends.

    `scope="task"` (the default) records only the errors handled in this task and the tasks it
    starts (in-process clients, task groups), so tests running at the same time never see each
    other's events. A server in another thread (uvicorn) or a consumer task started earlier
    does not run in this task's context: `scope="registry"` records every event of the registry.

    ```python
    with recording(exc) as events:
        await exc.handle(CardDeclined(), correlation_id="c-1")
    assert events.only.handler is payment_failed
    assert (events.only.outcome, events.only.correlation_id) == ("published", "c-1")
    ```
    """
    return Recording(registry, scope)


def _summary(event: ErrorEvent) -> str:
    handler = event.handler
    by = "" if handler is None else f" by {getattr(handler, '__qualname__', repr(handler))}"
    return f"{type(event.error).__qualname__} {event.outcome}{by}"
