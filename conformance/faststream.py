"""FastStream: its source distribution ships no tests, so this project's parity tests stand in.

They run FastStream's `ExceptionMiddlewareTestcase` scenarios (tests/brokers/base/middlewares.py
in the FastStream repository) and the errors no handler takes through `faststream`'s own
`ExceptionMiddleware` and through excepthub's, on Redis, RabbitMQ and NATS JetStream, in memory
and on the real servers, and require the same observable results. The two tests of that case
that compare FastStream's private `_handlers` / `_publish_handlers` are not ported
(docs/compatibility.md says why).
"""

from __future__ import annotations

SUITES: dict[str, list[str]] = {}
"""No sdist suite: FastStream publishes its tests in its repository only."""
MODES: tuple[str, ...] = ("unchanged",)  # no sdist suite to compare: the stand-in compares
PLUGIN = ""  # the stand-in tests build both middlewares themselves: nothing to inject
PYTEST_ARGS: list[str] = ["-q"]  # this repository's own pytest settings apply
STANDIN: list[str] = [
    "tests/adapters/test_faststream_parity.py",
    "tests/adapters/test_faststream_parity_brokers.py",
]
