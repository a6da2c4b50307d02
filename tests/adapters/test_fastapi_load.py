"""FastAPI under load on loopback: a few thousand concurrent requests through uvicorn, a third of
them failing in five ways. Every response is the expected one, every error is logged once, and
memory is flat from round to round. Bounded in count; no timing is asserted."""

from __future__ import annotations

import gc
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException

import excepthub_fastapi
from excepthub import ExceptionMiddleware

from ._servers import is_idle, uvicorn_server_on_loopback

pytestmark = pytest.mark.anyio

ROUNDS = 4
PER_ROUND = 900  # requests per round; a third of them fail
CONCURRENCY = 48
# Growth allowed between the second round and the last, counted once the server is idle: what
# is bounded comes and goes (anyio's worker threads, asyncio's cancelled keep-alive timers,
# until it drops them), while a leak of anything per failed request (an exception with its
# traceback and frames, a request) would exceed both by far over 600 failed requests.
OBJECT_TOLERANCE = 1_000
ERROR_TOLERANCE = 10  # exceptions alive: one kept per failed request would be 600 more
MEMORY_TOLERANCE = 4_000_000  # bytes
IDLE_WITHIN = 10  # seconds the server may take to close the round's connections


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Boom(Exception):
    pass


class NotFound(Exception):
    status_code = 404


class Counting(logging.Handler):
    """Counts excepthub's records by outcome, keeping none of them (memory must stay flat)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: Counter[str] = Counter()
        self.ids: Counter[bool] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.outcomes[record.__dict__["excepthub_outcome"]] += 1
        self.ids[record.__dict__["correlation_id"].startswith("load-")] += 1


def build_app(logger: logging.Logger) -> FastAPI:
    exc = ExceptionMiddleware(logger=logger)
    exc.add_handler(NotFound, publish=True)(lambda error: {"missing": True})
    exc.add_handler(Boom)(lambda error: None)
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.get("/ok/{i}")
    async def ok(i: int) -> dict[str, int]:
        return {"i": i}

    @app.get("/fallback/{i}")
    async def fallback(i: int) -> None:
        raise NotFound()

    @app.get("/side-effect/{i}")
    async def side_effect(i: int) -> None:
        raise Boom()

    @app.get("/http/{i}")
    async def http(i: int) -> None:
        raise HTTPException(409, f"conflict {i}")

    @app.get("/group/{i}")
    async def group(i: int) -> None:
        async def fetch() -> None:
            raise NotFound()

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)

    return app


# (path, expected status, expected body or None for text, excepthub outcome)
KINDS: list[tuple[str, int, Any, str]] = [
    ("fallback", 404, {"missing": True}, "published"),
    ("side-effect", 500, "Internal Server Error", "handled"),
    ("http", 409, None, "published"),
    ("invalid", 422, None, "published"),
    ("group", 404, {"missing": True}, "published"),
]
# An error no handler takes is the server's, as without excepthub: uvicorn logs it and closes
# the connection (test_fastapi_uvicorn.py and test_fastapi_transparency.py show it).


def expected(i: int) -> tuple[str, int, Any]:
    if i % 3:
        return f"/ok/{i}", 200, {"i": i}
    kind, status, body, _ = KINDS[(i // 3) % len(KINDS)]
    if kind == "http":
        body = {"detail": f"conflict {i}"}
    if kind == "invalid":
        return "/ok/not-a-number", status, body
    return f"/{kind}/{i}", status, body


@pytest.fixture
def server() -> Iterator[tuple[uvicorn.Server, int, Counting]]:
    counting = Counting()
    # A logger outside logging's registry: no capture handler can attach to it and keep
    # thousands of records (and their tracebacks) alive.
    logger = logging.Logger("excepthub.load", logging.INFO)
    logger.propagate = False
    logger.addHandler(counting)
    app = build_app(logger)
    config = {"access_log": False, "lifespan": "off", "backlog": 256}
    with uvicorn_server_on_loopback(app, **config) as (port, served):
        yield served, port, counting


class Connection:
    """A minimal HTTP/1.1 keep-alive client on one TCP connection: under load, httpx would
    spend more of the machine than the server under test."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def get(self, path: str, request_id: str) -> tuple[int, bytes]:
        request = f"GET {path} HTTP/1.1\r\nHost: load\r\nX-Request-ID: {request_id}\r\n\r\n"
        await self.stream.send(request.encode())
        head = await self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        return status, await self._exactly(int(headers.get("content-length", "0")))

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self.buffer += await self.stream.receive()
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += await self.stream.receive()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return body


def rss() -> int:
    """Resident memory of this process, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_load_every_response_expected_each_error_logged_once_memory_flat(
    server: tuple[uvicorn.Server, int, Counting], caplog: pytest.LogCaptureFixture
) -> None:
    served, port, counting = server
    caplog.set_level(logging.WARNING, logger="uvicorn")
    wrong: list[str] = []

    async def worker(requests: Iterator[int]) -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            connection = Connection(stream)
            for i in requests:
                path, status, body = expected(i)
                got_status, raw = await connection.get(path, f"load-{i}")
                got = json.loads(raw) if body is None or isinstance(body, dict) else raw.decode()
                if got_status != status or (body is not None and got != body):
                    wrong.append(f"{path}: {got_status} {raw[:80]!r}")

    objects: list[int] = []
    errors: list[int] = []
    memory: list[int] = []
    for round_ in range(ROUNDS):
        requests = iter(range(round_ * PER_ROUND, (round_ + 1) * PER_ROUND))
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):  # bounded: one request in flight per connection
                tg.start_soon(worker, requests)
        with anyio.fail_after(IDLE_WITHIN):
            while not is_idle(served):  # noqa: ASYNC110 - its state, from another thread
                await anyio.sleep(0.01)
        gc.collect()
        alive = gc.get_objects()
        objects.append(len(alive))
        errors.append(sum(isinstance(o, BaseException) for o in alive))
        del alive
        memory.append(rss())

    total = ROUNDS * PER_ROUND
    failing = total // 3
    assert wrong == []
    assert sum(counting.outcomes.values()) == failing  # each error logged once, none twice
    per_kind = failing // len(KINDS)
    assert counting.outcomes == {"published": 4 * per_kind, "handled": per_kind}
    assert counting.ids == {True: failing}  # every record carries its request's id
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []
    # The first round warms caches (routes, memo, pools); after it, nothing may pile up.
    assert errors[-1] - errors[1] < ERROR_TOLERANCE, errors
    assert objects[-1] - objects[1] < OBJECT_TOLERANCE, objects
    assert memory[-1] - memory[1] < MEMORY_TOLERANCE, memory
