"""excepthub's pytest plugin: the fixtures `excepthub_recording` and `excepthub_overrides`.

Registered with pytest's `pytest11` entry point when excepthub is installed. A module of its
own, outside the `excepthub` package, so that loading it imports nothing: not excepthub (nor
fast-depends and pydantic under it), no framework, not hypothesis. Each fixture imports
`excepthub.testing` when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from excepthub import ExceptionMiddleware
    from excepthub.testing import HandlerOverrides, Recording


@pytest.fixture
def excepthub_recording() -> Iterator[Callable[..., Recording]]:
    """`excepthub_recording(exc)` starts recording `exc`'s error events until the test ends
    (`scope="registry"` for every event, wherever it happens): `recording(exc)` for the whole
    test."""
    from excepthub.testing import recording

    with ExitStack() as stack:

        def start(
            registry: ExceptionMiddleware, *, scope: Literal["task", "registry"] = "task"
        ) -> Recording:
            return stack.enter_context(recording(registry, scope=scope))

        yield start


@pytest.fixture
def excepthub_overrides() -> Iterator[Callable[[ExceptionMiddleware], HandlerOverrides]]:
    """`excepthub_overrides(exc)` gives overrides of `exc`'s handlers that are undone when the
    test ends: `overriding(exc)` for the whole test."""
    from excepthub.testing import overriding

    with ExitStack() as stack:

        def start(registry: ExceptionMiddleware) -> HandlerOverrides:
            return stack.enter_context(overriding(registry))

        yield start
