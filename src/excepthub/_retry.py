"""Retries: transient errors re-run the unit of work in place, before any handler sees them."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["RedeliveryUnsupported", "Retry"]


def _is_exception_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Exception)


class RedeliveryUnsupported(RuntimeError):
    """A `Retry(through_broker=True)` policy met work it cannot give back to a broker.

    Raised instead of ever retrying such work in the process, before it runs: when FastMCP's
    middleware is built with the registry, when `call_with_retries` is called (it has no
    broker), and at a FastStream subscriber's first message where its broker cannot redeliver
    with a count (core NATS, a batch, a Redis list or channel, a message acked on receipt, the
    test brokers). It names what is missing and the fix; no handler takes it.
    """


@dataclass(frozen=True, slots=True)
class Retry:
    """Which exceptions are transient, and how often and how patiently to try again.

    `attempts` counts every run, the first included. Before retry `n` (1, 2, ...) the work waits
    `min(max_delay, base_delay * multiplier ** (n - 1))`, spread by `jitter` (a fraction: 0.1
    waits between 90% and 110% of that) and never above `max_delay`. `on` is matched by MRO,
    like handlers. `sleep` and `random` are there for tests (a fake clock); cancellation during
    a wait stops retrying at once. `through_broker=True` gives a failed message back to its
    broker for a later redelivery instead of waiting in process, the attempt counted by the
    broker (the FastStream adapter; elsewhere `RedeliveryUnsupported`; see "Retries through the
    broker" in the docs).

    ```python
    exc = ExceptionMiddleware(retry=Retry(on=(ConnectionError, TimeoutError), attempts=3))
    ```
    """

    on: tuple[type[Exception], ...] = (ConnectionError, TimeoutError)
    attempts: int = 3
    base_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.1
    through_broker: bool = False
    sleep: Callable[[float], Awaitable[Any]] = field(default=anyio.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        bad = [c for c in on if not _is_exception_class(c)]
        if bad or not on:
            raise TypeError(f"Retry(on=...) takes Exception subclasses, got {bad or on!r}")
        object.__setattr__(self, "on", on)
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            raise TypeError(f"Retry(attempts=...) must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"Retry(attempts=...) must be at least 1, got {self.attempts}")
        for name in ("base_delay", "multiplier", "max_delay", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"Retry({name}=...) must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Retry({name}=...) must be a finite number >= 0, got {value!r}")
        if self.jitter > 1:
            raise ValueError(f"Retry(jitter=...) is a fraction from 0 to 1, got {self.jitter}")
        if not isinstance(self.through_broker, bool):
            raise TypeError(
                f"Retry(through_broker=...) must be a bool, got {self.through_broker!r}"
            )
        for name in ("sleep", "random"):
            if not callable(getattr(self, name)):
                raise TypeError(f"Retry({name}=...) must be callable, got {getattr(self, name)!r}")

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` is worth another attempt: a transient class, or an exception group
        (what a task group raises) whose every leaf is transient."""
        if isinstance(error, self.on):
            return True
        return isinstance(error, ExceptionGroup) and all(map(self.is_transient, error.exceptions))

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        try:
            base = min(self.max_delay, self.base_delay * self.multiplier ** (retry - 1))
        except OverflowError:  # a late retry of a steep schedule overflows a float: the cap
            base = self.max_delay if self.base_delay else 0.0
        spread = 1 + self.jitter * (2 * self.random() - 1)
        return min(self.max_delay, base * spread)
