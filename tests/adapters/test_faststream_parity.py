"""The same handlers, written once, through FastStream's own `ExceptionMiddleware` and through
excepthub's: the same observable results on FastStream's documented behaviours. Then FastStream's
documentation examples, run with only the import changed."""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Callable
from typing import Any

import faststream
import pytest
from faststream import AckPolicy, Context, ContextRepo, Logger, StreamMessage
from faststream.exceptions import NackMessage, RejectMessage
from faststream.rabbit import RabbitBroker, TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage

import excepthub_faststream

pytestmark = pytest.mark.anyio

MIDDLEWARES = [faststream.ExceptionMiddleware, excepthub_faststream.ExceptionMiddleware]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


class Observed:
    """Everything a scenario shows from outside: handler calls, replies, publications, acks."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.messages: list[StreamMessage[Any]] = []

    def note(self, *event: Any) -> None:
        self.events.append(event)


Scenario = Callable[[Any, Observed], Any]
SCENARIOS: dict[str, Scenario] = {}


def scenario(func: Scenario) -> Scenario:
    SCENARIOS[func.__name__] = func
    return func


async def _run(
    middleware: Any,
    observed: Observed,
    bodies: list[str],
    *,
    raise_: Callable[[str], Exception] | None = None,
    parser: Any = None,
    decoder: Any = None,
    filter_: Any = None,
    ack_policy: AckPolicy = AckPolicy.NACK_ON_ERROR,
) -> None:
    """One subscriber on "in" with a publisher to "out"; each body is requested in turn."""
    broker = RabbitBroker(middlewares=[middleware])
    subscriber = broker.subscriber("in", parser=parser, decoder=decoder, ack_policy=ack_policy)

    @subscriber(filter=filter_ or (lambda message: True))
    @broker.publisher("out")
    async def handle(body: str, message: StreamMessage[Any] = Context()) -> str:
        observed.messages.append(message)
        if raise_ is not None:
            raise raise_(body)
        return body

    @broker.subscriber("out")
    async def sink(body: str, message: StreamMessage[Any] = Context()) -> None:
        observed.note("published", body, message.correlation_id)

    async with TestRabbitBroker(broker) as br:
        for body in bodies:
            try:
                reply = await br.request(body, "in", correlation_id=f"c-{body}")
            except Exception as error:
                observed.note("raised", type(error).__name__, str(error))
            else:
                # an empty reply (nothing published) carries a made-up correlation id
                observed.note("reply", reply.body, reply.body and reply.correlation_id)
    observed.note("acks", [m.committed and m.committed.value for m in observed.messages])


@scenario
async def fallback_is_the_reply_and_is_published(cls: Any, seen: Observed) -> None:
    exc = cls()

    @exc.add_handler(ValueError, publish=True)
    async def fallback(error: ValueError, message: StreamMessage[Any] = Context()) -> str:
        seen.note("fallback", repr(error), message.correlation_id)
        return "error occurred"

    await _run(exc, seen, ["a"], raise_=ValueError)


@scenario
async def side_effect_handler_acks_and_publishes_nothing(cls: Any, seen: Observed) -> None:
    exc = cls(handlers={KeyError: lambda error: seen.note("handled", repr(error))})
    await _run(exc, seen, ["a"], raise_=KeyError)


@scenario
async def unhandled_error_reaches_the_caller_and_the_ack_policy(cls: Any, seen: Observed) -> None:
    exc = cls(handlers={KeyError: lambda error: seen.note("wrong handler")})
    await _run(exc, seen, ["a"], raise_=ValueError)


@scenario
async def fallback_handlers_come_before_side_effect_handlers(cls: Any, seen: Observed) -> None:
    exc = cls(
        handlers={ValueError: lambda error: seen.note("side effect")},
        publish_handlers={Exception: lambda error: "fallback"},
    )
    await _run(exc, seen, ["a"], raise_=ValueError)


@scenario
async def the_most_specific_class_wins(cls: Any, seen: Observed) -> None:
    exc = cls()
    exc.add_handler(Exception, publish=True)(lambda error: "general")
    exc.add_handler(ValueError, publish=True)(lambda error: "value")
    exc.add_handler(LookupError)(lambda error: seen.note("lookup"))
    exc.add_handler(Exception)(lambda error: seen.note("broad"))
    await _run(exc, seen, ["v", "k"], raise_=lambda b: ValueError() if b == "v" else KeyError())


@scenario
async def parser_errors_reach_side_effect_handlers(cls: Any, seen: Observed) -> None:
    exc = cls(
        handlers={ValueError: lambda error, message=Context(): seen.note("side", repr(error))},
        publish_handlers={ValueError: lambda error: "never"},
    )

    async def parser(raw: Any) -> Any:
        raise ValueError("parser")

    await _run(exc, seen, ["a"], parser=parser)


@scenario
async def decoder_errors_reach_fallback_handlers(cls: Any, seen: Observed) -> None:
    exc = cls(publish_handlers={ValueError: lambda error: f"fallback: {error}"})

    async def decoder(message: Any) -> Any:
        raise ValueError("decoder")

    await _run(exc, seen, ["a"], decoder=decoder)


@scenario
async def filter_errors_reach_side_effect_handlers(cls: Any, seen: Observed) -> None:
    exc = cls(handlers={ValueError: lambda error: seen.note("side", repr(error))})

    def filter_(message: Any) -> bool:
        raise ValueError("filter")

    await _run(exc, seen, ["a"], filter_=filter_)


@scenario
async def control_flow_passes_a_broad_handler_by(cls: Any, seen: Observed) -> None:
    exc = cls(
        handlers={Exception: lambda error: seen.note("broad")},
        publish_handlers={Exception: lambda error: "broad fallback"},
    )
    await _run(exc, seen, ["a"], raise_=lambda body: NackMessage())


@scenario
async def a_handler_steers_the_ack_by_raising(cls: Any, seen: Observed) -> None:
    exc = cls()

    @exc.add_handler(KeyError)
    def reject(error: KeyError) -> None:
        raise RejectMessage

    @exc.add_handler(ValueError)
    async def nack(error: ValueError) -> None:
        raise NackMessage

    await _run(exc, seen, ["k", "v"], raise_=lambda b: KeyError() if b == "k" else ValueError())


@scenario
async def handlers_read_faststreams_context(cls: Any, seen: Observed) -> None:
    exc = cls()

    @exc.add_handler(ValueError, publish=True)
    async def fallback(
        error: ValueError,
        message: StreamMessage[Any] = Context(),
        body: bytes = Context("message.body"),
        logger: Any = Context(),
        broker: Any = Context(),
        context: Any = Context(),
        missing: Any = Context("not.there", default=None),
    ) -> str:
        seen.note("context", message.correlation_id, body, missing)
        seen.note("types", type(broker).__name__, type(context).__name__, logger is not None)
        return "ok"

    await _run(exc, seen, ["a"], raise_=ValueError)


@scenario
async def handlers_read_faststreams_annotated_context(cls: Any, seen: Observed) -> None:
    exc = cls()

    @exc.add_handler(ValueError, publish=True)
    async def fallback(
        error: ValueError, logger: Logger, msg: RabbitMessage, context: ContextRepo
    ) -> str:
        seen.note("annotated", type(msg).__name__, msg.correlation_id, type(context).__name__)
        return "ok" if logger is not None else "no logger"

    await _run(exc, seen, ["a"], raise_=ValueError)


@scenario
async def sync_handlers_answer_like_async_ones(cls: Any, seen: Observed) -> None:
    def fallback(error: ValueError, message: StreamMessage[Any] = Context()) -> dict[str, str]:
        return {"error": str(error), "id": message.correlation_id}

    def side(error: KeyError) -> None:
        seen.note("side", repr(error))

    exc = cls(handlers={KeyError: side}, publish_handlers={ValueError: fallback})
    await _run(exc, seen, ["k", "v"], raise_=lambda b: KeyError(b) if b == "k" else ValueError(b))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
# two scenarios shadow a side-effect handler on purpose: FastStream's rule, compared
@pytest.mark.filterwarnings("ignore::excepthub.ShadowedHandlerWarning")
async def test_same_observable_results_as_faststreams_own_middleware(name: str) -> None:
    results = []
    for cls in MIDDLEWARES:
        seen = Observed()
        await SCENARIOS[name](cls, seen)
        results.append(seen.events)
    theirs, ours = results
    assert ours == theirs
    assert ours  # a scenario that observes nothing proves nothing


# -- FastStream's documentation, with only the import changed -------------------------------

# The examples of FastStream's "Exception Middleware" page, each with the subscriber that
# exercises it; `Broker` (a placeholder there) is RabbitBroker here.
DOCS = {
    "add_handler": """
        from faststream import ExceptionMiddleware

        exc_middleware = ExceptionMiddleware()

        @exc_middleware.add_handler(Exception)
        async def error_handler(exc: Exception) -> None:
            print(repr(exc))
    """,
    "handlers_option": """
        from faststream import ExceptionMiddleware

        async def error_handler(exc: Exception) -> None:
            print(repr(exc))

        exc_middleware = ExceptionMiddleware(
            handlers={
                Exception: error_handler
            }
        )
    """,
    "add_handler_publish": """
        from faststream import ExceptionMiddleware

        exc_middleware = ExceptionMiddleware()

        @exc_middleware.add_handler(Exception, publish=True)
        async def error_handler(exc: Exception) -> str:
            print(repr(exc))
            return "error occurred"
    """,
    "publish_handlers_option": """
        from faststream import ExceptionMiddleware

        async def error_handler(exc: Exception) -> str:
            print(repr(exc))
            return "error occurred"

        exc_middleware = ExceptionMiddleware(
            publish_handlers={
                Exception: error_handler
            }
        )
    """,
    "context_message": """
        from typing import Any
        from faststream import Context
        from faststream import ExceptionMiddleware
        from faststream.message import StreamMessage

        exc_middleware = ExceptionMiddleware()

        @exc_middleware.add_handler(Exception, publish=True)
        async def base_exc_handler(
            exc: Exception,
            message: StreamMessage[Any] = Context(),
        ) -> str:
            print(exc, message.body)
            return "default"
    """,
    "handler_priority": """
        from faststream import ExceptionMiddleware

        exc_middleware = ExceptionMiddleware()

        @exc_middleware.add_handler(ValueError, publish=True)
        async def handle_value_error(exc: ValueError) -> str:
            return "value_error_handled"

        @exc_middleware.add_handler(Exception, publish=True)
        async def handle_general_error(exc: Exception) -> str:
            return "general_error_handled"
    """,
}

COMPLETE_EXAMPLE = """
    from typing import Any
    from faststream import FastStream, Context
    from faststream import ExceptionMiddleware
    from faststream.rabbit import RabbitBroker as Broker
    from faststream.message import StreamMessage

    # Create exception middleware
    exception_middleware = ExceptionMiddleware()

    @exception_middleware.add_handler(ValueError)
    async def handle_value_error(exc: ValueError) -> None:
        print(f"ValueError occurred: {exc}")

    @exception_middleware.add_handler(ConnectionError, publish=True)
    async def handle_connection_error(
        exc: ConnectionError,
        message: StreamMessage[Any] = Context(),
    ) -> dict[str, Any]:
        print(f"Connection failed: {exc}")
        return {
            "error": "service_unavailable",
            "message": "External service is temporarily unavailable",
            "retry_after": 300
        }

    @exception_middleware.add_handler(TypeError, publish=True)
    async def handle_type_error(
        exc: TypeError,
        message: StreamMessage[Any] = Context(),
    ) -> dict[str, str]:
        print(f"Type error: {exc}")
        return {
            "error": "invalid_data",
            "message": "The provided data format is invalid"
        }

    @exception_middleware.add_handler(Exception)
    async def handle_general_error(
        exc: Exception,
        message: StreamMessage[Any] = Context(),
    ) -> None:
        print(f"Unhandled exception: {exc}")
        print(f"Message: {message.body}")

    broker = Broker(middlewares=[exception_middleware])

    @broker.subscriber("input_topic")
    @broker.publisher("output_topic")
    async def process_message(msg: dict[str, Any]) -> dict[str, Any]:
        if msg.get("action") == "raise_value_error":
            raise ValueError("This is a test ValueError")

        if msg.get("action") == "raise_connection_error":
            raise ConnectionError("Database connection failed")

        if msg.get("action") == "raise_type_error":
            raise TypeError("Invalid data type provided")

        if msg.get("action") == "raise_key_error":
            raise KeyError("other")

        return {"status": "processed", "data": msg}
"""

OURS = "from excepthub_faststream import ExceptionMiddleware"


def _load(source: str, *, ours: bool) -> dict[str, Any]:
    source = textwrap.dedent(source)
    line = "from faststream import ExceptionMiddleware"
    assert source.count(line) == 1
    namespace: dict[str, Any] = {"__name__": "faststream_docs_example"}
    exec(compile(source.replace(line, OURS) if ours else source, "<docs>", "exec"), namespace)
    return namespace


async def _exercise_snippet(namespace: dict[str, Any]) -> list[Any]:
    exc = namespace.get("exc_middleware")
    broker = RabbitBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise ValueError(body) if body == "value" else RuntimeError(body)

    seen: list[Any] = []
    async with TestRabbitBroker(broker) as br:
        for body in ("value", "runtime"):
            reply = await br.request(body, "in")
            seen.append(reply.body)
    return seen


async def _exercise_complete(namespace: dict[str, Any]) -> list[Any]:
    broker = namespace["broker"]
    seen: list[Any] = []

    @broker.subscriber("output_topic")
    async def output(body: dict[str, Any]) -> None:
        seen.append(("output_topic", body))

    actions = ["ok", "raise_value_error", "raise_connection_error", "raise_type_error"]
    async with TestRabbitBroker(broker) as br:
        for action in [*actions, "raise_key_error"]:
            await br.publish({"action": action}, "input_topic")
    return seen


@pytest.mark.parametrize("example", [*sorted(DOCS), "complete_example"])
async def test_faststreams_documentation_examples_run_with_only_the_import_changed(
    example: str,
) -> None:
    outcomes = []
    for ours in (False, True):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            if example == "complete_example":
                namespace = _load(COMPLETE_EXAMPLE, ours=ours)
                seen = await _exercise_complete(namespace)
            else:
                namespace = _load(DOCS[example], ours=ours)
                seen = await _exercise_snippet(namespace)
        middleware = namespace.get("exc_middleware") or namespace["exception_middleware"]
        expected = (
            excepthub_faststream.ExceptionMiddleware if ours else faststream.ExceptionMiddleware
        )
        assert isinstance(middleware, expected)
        outcomes.append((seen, printed.getvalue()))
    theirs, ours_ = outcomes
    assert ours_ == theirs
    assert theirs[0] or theirs[1]
