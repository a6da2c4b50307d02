"""Invocation: how a handler gets the error, its injected arguments, and its thread.

The first positional parameter (or the first annotated with an exception class) receives the
error; the rest come from the context by name, `Context`, fast-depends fields and `Depends`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
from fast_depends import Provider
from fast_depends.core import CallModel
from fast_depends.library import CustomField

from excepthub import Context, Depends, DroppedValueWarning, ExceptionMiddleware, Outcome, reraise
from excepthub._handlers import compile_handler

pytestmark = pytest.mark.anyio


class Request:
    def __init__(self, user: str) -> None:
        self.user = user
        self.headers = {"x-request-id": "r-7"}


class ContextRepo:
    """What FastStream passes as `context__`: a repository of named values."""

    def __init__(self, **values: Any) -> None:
        self.values = values


class RepoField(CustomField):
    """A foreign fast-depends field, shaped like FastStream's `Context()`."""

    def __init__(self, name: str) -> None:
        super().__init__(cast=False)
        self.name = name

    def use(self, /, **kwargs: Any) -> dict[str, Any]:
        assert self.param_name is not None
        kwargs[self.param_name] = kwargs["context__"].values[self.name]
        return kwargs


# -- calling ----------------------------------------------------------------------------------


async def test_async_handler_is_awaited() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError) -> str:
        return f"awaited {error}"

    outcome = await exc.handle(ValueError("x"))

    assert outcome.value == "awaited x"


async def test_sync_handler_runs_in_a_worker_thread() -> None:
    exc = ExceptionMiddleware()
    seen: list[int] = []

    @exc.add_handler(ValueError)
    def on_value(error: ValueError) -> None:
        seen.append(threading.get_ident())

    await exc.handle(ValueError())

    assert seen != [threading.get_ident()]
    assert len(seen) == 1


async def test_inline_handler_runs_on_the_event_loop_thread() -> None:
    exc = ExceptionMiddleware()
    seen: list[int] = []

    @exc.add_handler(ValueError, inline=True)
    def on_value(error: ValueError) -> None:
        seen.append(threading.get_ident())

    await exc.handle(ValueError())

    assert seen == [threading.get_ident()]


async def test_inline_registry_runs_sync_handlers_on_the_event_loop_thread() -> None:
    seen: list[int] = []
    exc = ExceptionMiddleware(
        handlers={ValueError: lambda e: seen.append(threading.get_ident())}, inline=True
    )

    await exc.handle(ValueError())

    assert seen == [threading.get_ident()]


async def test_handler_inline_false_overrides_an_inline_registry() -> None:
    exc = ExceptionMiddleware(inline=True)
    seen: list[int] = []

    @exc.add_handler(ValueError, inline=False)
    def on_value(error: ValueError) -> None:
        seen.append(threading.get_ident())

    await exc.handle(ValueError())

    assert seen != [threading.get_ident()]


async def test_sync_handler_returning_an_awaitable_is_awaited() -> None:
    async def late(error: Exception) -> str:
        return "late"

    exc = ExceptionMiddleware(publish_handlers={ValueError: lambda e: late(e)})

    outcome = await exc.handle(ValueError())

    assert outcome.value == "late"


async def test_object_with_async_call_is_awaited() -> None:
    class Handler:
        async def __call__(self, error: Exception) -> str:
            return "called"

    exc = ExceptionMiddleware(publish_handlers={ValueError: Handler()})

    assert (await exc.handle(ValueError())).value == "called"


# -- the error parameter ----------------------------------------------------------------------


async def test_first_positional_parameter_gets_the_error_whatever_its_name() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(anything, request_id="-"):  # type: ignore[no-untyped-def]
        return anything

    error = ValueError()

    assert (await exc.handle(error, request_id="r")).value is error


async def test_first_parameter_annotated_with_an_exception_class_gets_the_error() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def starlette_style(request: Request, exc: ValueError) -> tuple[str, ValueError]:
        return request.user, exc

    error = ValueError()

    outcome = await exc.handle(error, request=Request("ada"))

    assert outcome.value == ("ada", error)


async def test_error_parameter_annotated_with_a_union_of_exceptions_gets_the_error() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler((KeyError, IndexError), publish=True)
    async def on_lookup(request: Request, error: KeyError | IndexError) -> object:
        return error

    error = IndexError()

    assert (await exc.handle(error, request=Request("ada"))).value is error


async def test_later_unannotated_parameter_named_exc_gets_the_error() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def starlette_style(request, exc):  # type: ignore[no-untyped-def]
        return request.user, exc

    error = ValueError()

    assert (await exc.handle(error, request=Request("ada"))).value == ("ada", error)


@pytest.mark.parametrize("name", ["_", "req", "conn"])
async def test_parameter_before_the_error_gets_the_request_whatever_its_name(name: str) -> None:
    exc = ExceptionMiddleware(logger=None)
    namespace: dict[str, Any] = {}
    exec(f"async def handler({name}, exc: ValueError):\n    return ({name}, exc)", namespace)
    exc.add_handler(ValueError, publish=True)(namespace["handler"])
    error = ValueError()

    assert (await exc.handle(error, request="the request")).value == ("the request", error)


async def test_parameter_before_the_error_named_like_a_value_gets_that_value() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(ValueError, publish=True)
    async def handler(websocket: object, exc: ValueError) -> object:
        return websocket

    assert (await exc.handle(ValueError(), request="r", websocket="ws")).value == "ws"


async def test_missing_value_for_a_parameter_before_the_error_is_a_lookup_error() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(ValueError)
    async def starlette_style(request: Request, exc: ValueError) -> None: ...

    error = ValueError()
    with pytest.raises(LookupError, match="no context value 'request'") as raised:
        await exc.handle(error)

    assert raised.value.__context__ is error


async def test_var_positional_handler_gets_the_error() -> None:
    exc = ExceptionMiddleware(publish_handlers={ValueError: lambda *args: args})
    error = ValueError()

    assert (await exc.handle(error)).value == (error,)


# -- values from the context -------------------------------------------------------------------


async def test_parameter_named_like_a_context_value_receives_it() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, request: Request) -> str:
        return request.user

    assert (await exc.handle(ValueError(), request=Request("ada"))).value == "ada"


async def test_parameter_default_is_used_when_the_context_lacks_the_name() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, request_id: str = "none") -> str:
        return request_id

    assert (await exc.handle(ValueError())).value == "none"


async def test_context_takes_the_value_named_like_the_parameter() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, request_id: str = Context()) -> str:
        return request_id

    assert (await exc.handle(ValueError(), request_id="r-1")).value == "r-1"


async def test_context_with_a_name_takes_that_value() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, rid: str = Context("request_id")) -> str:
        return rid

    assert (await exc.handle(ValueError(), request_id="r-1")).value == "r-1"


async def test_dotted_context_walks_attributes_and_keys() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(
        error: ValueError,
        user: str = Context("request.user"),
        rid: str = Context("request.headers.x-request-id"),
    ) -> tuple[str, str]:
        return user, rid

    assert (await exc.handle(ValueError(), request=Request("ada"))).value == ("ada", "r-7")


async def test_annotated_context_takes_the_named_value() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, rid: Annotated[str, Context("request_id")]) -> str:
        return rid

    assert (await exc.handle(ValueError(), request_id="r-1")).value == "r-1"


async def test_context_default_is_used_when_the_value_is_missing() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(
        error: ValueError, rid: str = Context("request.headers.missing", default="-")
    ) -> str:
        return rid

    assert (await exc.handle(ValueError(), request=Request("ada"))).value == "-"


async def test_missing_context_value_fails_the_handler_with_a_lookup_error() -> None:
    exc = ExceptionMiddleware(logger=None)
    called: list[object] = []

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError, request_id: str = Context()) -> None:
        called.append(request_id)

    error = ValueError()
    with pytest.raises(LookupError, match="no context value 'request_id'") as raised:
        await exc.handle(error)

    assert raised.value.__context__ is error
    assert called == []


async def test_var_keyword_receives_the_whole_context() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, **context: Any) -> dict[str, Any]:
        return context

    assert (await exc.handle(ValueError(), a=1, b=2)).value == {"a": 1, "b": 2}


async def test_foreign_custom_field_is_asked_with_the_context() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, message: str = RepoField("message")) -> str:  # type: ignore[assignment]
        return message

    outcome = await exc.handle(ValueError(), context__=ContextRepo(message="body"))

    assert outcome.value == "body"


async def test_annotated_foreign_custom_field_is_asked_with_the_context() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, message: Annotated[str, RepoField("message")]) -> str:
        return message

    outcome = await exc.handle(ValueError(), context__=ContextRepo(message="body"))

    assert outcome.value == "body"


# -- Depends ----------------------------------------------------------------------------------


def get_greeting() -> str:
    return "hello"


async def get_async_greeting() -> str:
    return "async hello"


async def test_sync_depends_is_injected() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> str:
        return greeting

    assert (await exc.handle(ValueError())).value == "hello"


async def test_async_depends_is_injected() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, greeting: str = Depends(get_async_greeting)) -> str:
        return greeting

    assert (await exc.handle(ValueError())).value == "async hello"


async def test_annotated_depends_is_injected() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, greeting: Annotated[str, Depends(get_greeting)]) -> str:
        return greeting

    assert (await exc.handle(ValueError())).value == "hello"


async def test_depends_in_a_sync_handler_is_injected() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> str:
        return greeting

    assert (await exc.handle(ValueError())).value == "hello"


async def test_handler_with_depends_still_gets_context_values() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(
        error: ValueError,
        request: Request,
        rid: str = Context("request_id"),
        greeting: str = Depends(get_greeting),
    ) -> tuple[object, str, str, str]:
        return error, request.user, rid, greeting

    error = ValueError()
    outcome = await exc.handle(error, request=Request("ada"), request_id="r-1")

    assert outcome.value == (error, "ada", "r-1", "hello")


async def test_dependency_receives_context_values_by_name() -> None:
    exc = ExceptionMiddleware()

    def user_of(request: Request) -> str:
        return request.user

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, user: str = Depends(user_of)) -> str:
        return user

    assert (await exc.handle(ValueError(), request=Request("ada"))).value == "ada"


async def test_yield_dependency_is_closed_after_the_handler() -> None:
    exc = ExceptionMiddleware()
    events: list[str] = []

    def resource() -> Iterator[str]:
        events.append("open")
        yield "resource"
        events.append("close")

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError, res: str = Depends(resource)) -> None:
        events.append(f"handler uses {res}")

    await exc.handle(ValueError())

    assert events == ["open", "handler uses resource", "close"]


async def test_async_yield_dependency_is_closed_after_the_handler() -> None:
    exc = ExceptionMiddleware()
    events: list[str] = []

    async def resource() -> AsyncIterator[str]:
        events.append("open")
        yield "resource"
        events.append("close")

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError, res: str = Depends(resource)) -> None:
        events.append(f"handler uses {res}")

    await exc.handle(ValueError())

    assert events == ["open", "handler uses resource", "close"]


async def test_yield_dependency_is_closed_when_the_handler_fails() -> None:
    exc = ExceptionMiddleware(logger=None)
    events: list[str] = []

    async def resource() -> AsyncIterator[str]:
        try:
            yield "resource"
        finally:
            events.append("close")

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError, res: str = Depends(resource)) -> None:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await exc.handle(ValueError())

    assert events == ["close"]


async def test_provider_override_replaces_a_dependency() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> str:
        return greeting

    exc.provider.override(get_greeting, lambda: "overridden")
    try:
        assert (await exc.handle(ValueError())).value == "overridden"
    finally:
        exc.provider.clear()


async def test_provider_scope_overrides_only_inside_the_block() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> str:
        return greeting

    with exc.provider.scope(get_greeting, lambda: "scoped"):
        inside = (await exc.handle(ValueError())).value

    assert (inside, (await exc.handle(ValueError())).value) == ("scoped", "hello")


async def test_registry_uses_the_provider_it_is_given() -> None:
    provider = Provider()
    exc = ExceptionMiddleware(provider=provider)

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> str:
        return greeting

    with provider.scope(get_greeting, lambda: "from my provider"):
        assert (await exc.handle(ValueError())).value == "from my provider"


async def test_registries_do_not_share_overrides() -> None:
    def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> str:
        return greeting

    first = ExceptionMiddleware(publish_handlers={ValueError: on_value})
    second = ExceptionMiddleware(publish_handlers={ValueError: on_value})

    with first.provider.scope(get_greeting, lambda: "first only"):
        assert (await second.handle(ValueError())).value == "hello"


def test_handler_without_depends_has_no_fast_depends_model() -> None:
    async def on_value(error: ValueError, request_id: str = Context(), other: int = 0) -> None: ...

    handler = compile_handler(on_value, inline=False, provider=Provider())

    assert handler.dependencies is None


def test_handler_with_depends_has_a_fast_depends_model() -> None:
    async def on_value(error: ValueError, greeting: str = Depends(get_greeting)) -> None: ...

    handler = compile_handler(on_value, inline=False, provider=Provider())

    assert handler.dependencies is not None


async def test_handler_without_depends_never_calls_fast_depends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fast-depends was asked")

    monkeypatch.setattr(CallModel, "asolve", refuse)
    monkeypatch.setattr(CallModel, "solve", refuse)
    exc = ExceptionMiddleware()

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, request_id: str = Context(), n: int = 1) -> str:
        return request_id * n

    assert (await exc.handle(ValueError(), request_id="r")).value == "r"


# -- outcomes -----------------------------------------------------------------------------------


async def test_fallback_outcome_carries_value_handler_and_error() -> None:
    async def on_value(error: ValueError) -> str:
        return "value"

    exc = ExceptionMiddleware(publish_handlers={ValueError: on_value})
    error = ValueError()

    assert await exc.handle(error) == Outcome(True, "value", on_value, error)


async def test_side_effect_outcome_carries_no_value() -> None:
    async def on_value(error: ValueError) -> str:
        return "ignored"

    with pytest.warns(DroppedValueWarning):  # typed `-> str`: the value would be dropped
        exc = ExceptionMiddleware(handlers={ValueError: on_value})
    error = ValueError()

    assert await exc.handle(error) == Outcome(False, None, on_value, error)


async def test_unhandled_error_propagates_as_the_same_object_with_its_traceback() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: lambda e: None}, logger=None)
    try:
        raise ValueError("unhandled")
    except ValueError as caught:
        error = caught
    traceback = error.__traceback__

    with pytest.raises(ValueError) as raised:
        await exc.handle(error)

    assert raised.value is error
    assert raised.value.__traceback__ is not None
    assert traceback is not None
    assert raised.value.__traceback__.tb_frame is not None
    assert traceback.tb_frame.f_code.co_name in {
        tb.tb_frame.f_code.co_name for tb in _walk_traceback(raised.value.__traceback__)
    }


def _walk_traceback(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
async def test_base_exception_only_error_always_propagates(error: BaseException) -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None})

    with pytest.raises(BaseException) as raised:
        await exc.handle(error)

    assert raised.value is error


async def test_handler_reraising_its_error_leaves_it_unhandled() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError) -> None:
        raise error

    error = ValueError()
    with pytest.raises(ValueError) as raised:
        await exc.handle(error)

    assert raised.value is error
    assert exc.get_error_stats() == {"ValueError": {"unhandled": 1}}


async def test_sync_handler_reraising_in_a_worker_thread_leaves_it_unhandled() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(ValueError)
    def on_value(error: ValueError) -> None:
        raise error

    error = ValueError()
    with pytest.raises(ValueError) as raised:
        await exc.handle(error)

    assert raised.value is error
    assert exc.get_error_stats() == {"ValueError": {"unhandled": 1}}


async def test_reraise_lets_the_error_through_without_log_or_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None})
    exc.add_handler(KeyError)(reraise)
    error = KeyError()

    with caplog.at_level("DEBUG", logger="excepthub"), pytest.raises(KeyError) as raised:
        await exc.handle(error)

    assert raised.value is error
    assert caplog.records == []
    assert exc.get_error_stats() == {}


async def test_reraise_as_a_fallback_handler_lets_the_error_through() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None})
    exc.add_handler(KeyError, publish=True)(reraise)
    error = KeyError()

    with pytest.raises(KeyError) as raised:
        await exc.handle(error)

    assert raised.value is error


async def test_side_effect_only_handling_skips_fallback_handlers() -> None:
    async def on_error(error: Exception) -> None: ...

    exc = ExceptionMiddleware(handlers={Exception: on_error}, publish_handlers={KeyError: repr})

    outcome = await exc.handle(KeyError(), publish=False)

    assert (outcome.published, outcome.handler) == (False, on_error)


async def test_a_later_parameter_named_exc_with_a_default_does_not_take_the_error() -> None:
    exc = ExceptionMiddleware(logger=None)
    seen: list[object] = []

    @exc.add_handler(KeyError, publish=True, inline=True)
    def handler(e, exc=None):  # type: ignore[no-untyped-def]
        seen.append((e, exc))

    error = KeyError("k")
    await exc.handle(error)
    assert seen == [(error, None)]
