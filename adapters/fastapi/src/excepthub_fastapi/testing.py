"""What an HTTP client received for a request: status, headers and body bytes, as sent.

```python
from excepthub_fastapi.testing import request

received = await request(app, "GET", "/items/1")
assert received.status == 500
assert "hunter2" not in received  # the secret reaches no client: not in the body, no header
```
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message

__all__ = ["Received", "request"]


class _Response(Protocol):
    """An httpx `Response` or a `TestClient` one."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...

    @property
    def content(self) -> bytes: ...


@dataclass(frozen=True)
class Received:
    """What a client received: the status, the headers (in order, as sent) and the body.

    `text in received` tells whether `text` (str or bytes) appears anywhere a client can read
    it: the body (also JSON-escaped, as a JSON answer would carry it), a header's name or
    value. `raised` is what the app raised to the server (which logs it), not sent.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raised: BaseException | None = None

    @classmethod
    def of(cls, response: _Response) -> Received:
        """What an httpx (or `TestClient`) response holds: for an app on a real server."""
        raw = getattr(response.headers, "raw", None)
        pairs: Iterable[tuple[Any, Any]] = raw if raw is not None else response.headers.items()
        headers = tuple((_text(name), _text(value)) for name, value in pairs)
        return cls(response.status_code, headers, response.content)

    def header(self, name: str) -> str | None:
        """The first value of the header `name` (any case), or `None`."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str | bytes):
            raise TypeError(f"look for str or bytes in what a client received, not {text!r}")
        needle = text.encode() if isinstance(text, str) else text
        escaped = json.dumps(needle.decode(errors="replace"))[1:-1].encode()
        wire = [self.body, *(f"{key}: {value}".encode("latin-1") for key, value in self.headers)]
        return any(needle in part or escaped in part for part in wire)


async def request(
    app: ASGIApp,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | str = b"",
) -> Received:
    """Send one HTTP request straight to the ASGI `app` and collect what it sends back, as a
    server would put it on the wire. An app that raises after (or instead of) answering has
    the exception in `raised`; with no answer at all the client gets what uvicorn sends then,
    500 `Internal Server Error`. The app's lifespan is not run (for that, use `TestClient` and
    `Received.of(response)`).
    """
    parts = urlsplit(url)
    payload = body.encode() if isinstance(body, str) else body
    sent_headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    if payload:
        sent_headers.append((b"content-length", str(len(payload)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": parts.path or "/",
        "raw_path": (parts.path or "/").encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), *sent_headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    requested = False
    start: Message | None = None
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    raised: BaseException | None = None
    try:
        await app(scope, receive, send)
    except Exception as error:  # what the server would log; the client got what was sent
        raised = error
    if start is None:  # nothing sent: the server answers for the app
        return Received(500, _SERVER_ERROR_HEADERS, b"Internal Server Error", raised)
    headers_sent = tuple((_text(k), _text(v)) for k, v in start.get("headers", []))
    return Received(start["status"], headers_sent, b"".join(chunks), raised)


_SERVER_ERROR_HEADERS = (("content-type", "text/plain; charset=utf-8"), ("content-length", "21"))


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
