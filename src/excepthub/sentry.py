"""Sentry: failures captured once, with excepthub's outcome; handled errors as breadcrumbs.

```python
import excepthub.sentry
from excepthub import ExceptionMiddleware

exc = ExceptionMiddleware(on_error=[excepthub.sentry.hook()])
```

Needs the `sentry` extra (`pip install "excepthub[sentry]"`); `sentry_sdk.init(...)` is the
application's, with whatever integrations it uses (FastAPI, Starlette, asyncio, logging).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any, Final

import sentry_sdk
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.scope import add_global_event_processor

from ._observe import _class_name, _handler_name
from ._outcome import ErrorEvent

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = ["SentryHook", "hook"]

# Outcomes that are failures: captured as events. The others are breadcrumbs (or opt-in events).
_FAILURES: Final = frozenset({"unhandled", "failed"})
_LEVELS: Final = {
    "published": "info",
    "handled": "warning",
    "retried": "warning",
    "unhandled": "error",
    "failed": "error",
}
# Set on an exception once the hook captured it, so that Sentry's own integrations (the
# framework's, asyncio's, logging's) drop their event for it: exceptions take no weak references.
_CAPTURED: Final = "_excepthub_sentry_captured"


class SentryHook:
    """An `on_error` hook that reports each `ErrorEvent` to Sentry. Built by `hook()`."""

    __slots__ = ("_capture_handled",)

    def __init__(self, *, capture_handled: bool = False) -> None:
        self._capture_handled = capture_handled
        _install_once()

    def __call__(self, event: ErrorEvent) -> None:
        """Capture a failure once (tagged), or leave a breadcrumb for a handled error."""
        if not sentry_sdk.is_initialized():
            return
        outcome = event.outcome
        tags = _tags(event)
        if outcome in _FAILURES or self._capture_handled:
            error = _propagating(event.error) if outcome == "failed" else event.error
            sentry_sdk.capture_exception(error, tags=tags, level=_LEVELS[outcome])
            _mark(error)
            return
        sentry_sdk.add_breadcrumb(
            category="excepthub",
            message=f"{tags['excepthub.exception']} {outcome}",
            level=_LEVELS[outcome],
            data=tags,
        )


def hook(*, capture_handled: bool = False) -> SentryHook:
    """An `on_error` hook reporting errors to Sentry (a no-op until `sentry_sdk.init`).

    An `unhandled` or `failed` error is captured as one event, tagged `excepthub.outcome`,
    `excepthub.handler`, `excepthub.framework` and `correlation_id`; for a failed one the event
    is the handler's exception, with the original chained, as it propagates. Sentry's own
    integrations (FastAPI, Starlette, asyncio, logging) do not capture the same exception a
    second time, and excepthub's own log records are not turned into events or breadcrumbs.
    (Sentry's dedupe keeps the first event of an exception: where a framework logged it before
    excepthub saw it, that event is the framework's.)
    A handled, published or retried error is a breadcrumb on the events that follow, or, with
    `capture_handled=True`, an event of its own (level warning or info).

    ```python
    exc = ExceptionMiddleware(on_error=[excepthub.sentry.hook()])
    ```
    """
    if not isinstance(capture_handled, bool):
        raise TypeError(
            f"excepthub.sentry.hook(capture_handled=...) takes a bool, got {capture_handled!r}"
        )
    return SentryHook(capture_handled=capture_handled)


def _tags(event: ErrorEvent) -> dict[str, str]:
    tags = {
        "excepthub.exception": _class_name(type(event.error)),
        "excepthub.outcome": event.outcome,
    }
    if event.handler is not None:
        tags["excepthub.handler"] = _handler_name(event.handler)
    if event.framework is not None:
        tags["excepthub.framework"] = event.framework
    if event.correlation_id is not None:
        tags["correlation_id"] = str(event.correlation_id)
    return tags


def _propagating(error: BaseException) -> BaseException:
    """The handler's exception that goes on in place of `error` (hooks run while it is being
    handled, with `error` chained to it), or `error` itself."""
    failure = sys.exc_info()[1]
    seen: set[int] = set()
    link = failure
    while link is not None and id(link) not in seen:
        if link is error:
            return failure or error
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return error


def _mark(error: BaseException) -> None:
    """Mark `error` and what it chains as captured; a frozen exception is left unmarked."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        with contextlib.suppress(AttributeError, TypeError):  # an exception without __dict__
            setattr(link, _CAPTURED, True)
        link = link.__cause__ or link.__context__


def _captured(error: BaseException) -> bool:
    """Whether the hook captured `error` or the exception it was raised from."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        if getattr(link, _CAPTURED, False):
            return True
        seen.add(id(link))
        link = link.__cause__  # FastMCP's wrapper, Starlette's "response started" error
    return False


_installed: list[bool] = []


def _install_once() -> None:
    if not _installed:
        _installed.append(True)
        add_global_event_processor(_drop_duplicates)


def _drop_duplicates(event: Event, hint: Hint) -> Event | None:
    """Sentry's processor: no second event for what the hook captured, none for excepthub's own
    log records, and no breadcrumbs of those records (the hook leaves its own)."""
    record = hint.get("log_record") if hint else None
    if record is not None and getattr(record, "excepthub_outcome", None) is not None:
        DedupeIntegration.reset_last_seen()  # it saw this event, which is never sent
        return None
    exc_info = hint.get("exc_info") if hint else None
    if exc_info and isinstance(exc_info[1], BaseException) and _captured(exc_info[1]):
        return None  # the hook captures before it marks: this is a later event
    crumbs: Any = event.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else None
    if values:
        crumbs["values"] = [
            crumb
            for crumb in values
            if not (crumb.get("type") == "log" and "excepthub_outcome" in (crumb.get("data") or {}))
        ]
    return event
