"""Real servers for the end-to-end tests: uvicorn on a free port of 127.0.0.1, in a thread, and
a recorder of what an ASGI app sends on the wire."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@contextmanager
def uvicorn_on_loopback(app: Any, **config: Any) -> Iterator[int]:
    """Serve `app` until the block ends; yields the port. `log_config=None` by default, so that
    uvicorn's records reach the root logger (and the tests listening there)."""
    with uvicorn_server_on_loopback(app, **config) as (port, _):
        yield port


@contextmanager
def uvicorn_server_on_loopback(app: Any, **config: Any) -> Iterator[tuple[int, uvicorn.Server]]:
    """`uvicorn_on_loopback`, yielding the server too (to ask it whether it is idle)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **{"log_config": None, **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def is_idle(server: uvicorn.Server) -> bool:
    """No connection open and no request task left: what a request leaves behind is settled."""
    state = server.server_state
    return not state.connections and all(task.done() for task in state.tasks)


class Recorder:
    """An ASGI app around the MCP app: keeps what goes on the wire, both ways."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[bytes] = []
        self.requests: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tap_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.requests.append(message.get("body", b""))
            return message

        async def tap_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.sent.append(repr((message["status"], message.get("headers"))).encode())
            elif message["type"] == "http.response.body":
                self.sent.append(message.get("body", b""))
            await send(message)

        await self.app(scope, tap_receive, tap_send)

    def wire(self) -> bytes:
        return b"".join(self.sent)

    def request_ids(self, method: str) -> list[str]:
        ids = []
        for body in self.requests:
            try:
                message = json.loads(body)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("method") == method:
                ids.append(str(message["id"]))
        return ids
