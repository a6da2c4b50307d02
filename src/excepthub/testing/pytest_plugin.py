"""excepthub's pytest plugin: the fixtures `excepthub_recording` and `excepthub_overrides`.

Registered with pytest's `pytest11` entry point when excepthub is installed. It defines
fixtures only, and imports nothing until a test asks for one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from excepthub import ExceptionMiddleware

    from ._overrides import HandlerOverrides
    from ._recording import Recording, Scope


@pytest.fixture
def excepthub_recording() -> Iterator[Callable[..., Recording]]:
    """`excepthub_recording(exc)` starts recording `exc`'s error events until the test ends
    (`scope="registry"` for every event, wherever it happens): `recording(exc)` for the whole
    test."""
    from ._recording import recording

    with ExitStack() as stack:

        def start(registry: ExceptionMiddleware, *, scope: Scope = "task") -> Recording:
            return stack.enter_context(recording(registry, scope=scope))

        yield start


@pytest.fixture
def excepthub_overrides() -> Iterator[Callable[[ExceptionMiddleware], HandlerOverrides]]:
    """`excepthub_overrides(exc)` gives overrides of `exc`'s handlers that are undone when the
    test ends: `overriding(exc)` for the whole test."""
    from ._overrides import overriding

    with ExitStack() as stack:

        def start(registry: ExceptionMiddleware) -> HandlerOverrides:
            return stack.enter_context(overriding(registry))

        yield start
