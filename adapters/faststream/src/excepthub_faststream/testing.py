"""What a requester received for a message: the reply's body bytes and headers, as published.

```python
from excepthub_faststream.testing import request

async with TestRedisBroker(broker) as br:
    received = await request(br, {"card": "4242"}, "payments")
assert received.json() == {"error": "payment failed"}
assert "hunter2" not in received  # the secret reaches no requester
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Received", "request"]


@dataclass(frozen=True)
class Received:
    """The reply a requester received: `body` bytes, `headers`, `correlation_id`; or, when no
    reply came, `error` (a timeout on a real broker; what the consumer raised with FastStream's
    `TestBroker`, which calls it in the requester's place).

    `text in received` tells whether `text` (str or bytes) appears in the reply: the body (also
    JSON-escaped, as a JSON reply would carry it), a header's name or value.
    """

    body: bytes = b""
    headers: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    error: BaseException | None = None

    @classmethod
    def of(cls, reply: Any) -> Received:
        """What a reply message holds (what `broker.request(...)` returns)."""
        body = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
        return cls(body, dict(reply.headers or {}), reply.correlation_id)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str | bytes):
            raise TypeError(f"look for str or bytes in what a requester received, not {text!r}")
        needle = text.encode() if isinstance(text, str) else text
        escaped = json.dumps(needle.decode(errors="replace"))[1:-1].encode()
        wire = [self.body, *(f"{key}: {value}".encode() for key, value in self.headers.items())]
        return any(needle in part or escaped in part for part in wire)


async def request(broker: Any, message: Any, *args: Any, **kwargs: Any) -> Received:
    """`broker.request(message, *args, **kwargs)`, the reply as `Received` (an error raised on
    the way, a timeout for instance, in `error`): a connected broker or a `TestBroker`."""
    try:
        reply = await broker.request(message, *args, **kwargs)
    except Exception as error:
        return Received(error=error)
    return Received.of(reply)
