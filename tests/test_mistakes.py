"""Easy mistakes with a registry: each is a clear error or warning when it is made.

Shadowed side-effect handlers and dropped values are warnings (the code works, not as meant);
a parameter nothing can fill, an error annotation the keys do not match, and a registry used
where a framework expects a middleware are errors that name the fix.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from excepthub import (
    Context,
    Defaults,
    Depends,
    DroppedValueWarning,
    ExceptionMiddleware,
    Resolution,
    ShadowedHandlerWarning,
    reraise,
)

pytestmark = pytest.mark.anyio


class PaymentGatewayDown(ConnectionError):
    """A business error whose side effect (page the payments team) must run."""


async def page_payments(error: PaymentGatewayDown) -> None:
    """A side-effect handler."""


async def sorry(error: Exception) -> dict[str, str]:
    return {"error": "sorry"}


@pytest.fixture
def no_warnings() -> Iterator[None]:
    """Every warning is an error inside the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- shadowed side-effect handlers ----------------------------------------------------------


def test_a_side_effect_handler_under_a_fallback_for_a_base_class_is_warned_about() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: sorry})

    with pytest.warns(ShadowedHandlerWarning) as caught:
        exc.add_handler(PaymentGatewayDown)(page_payments)

    message = str(caught[0].message)
    assert "page_payments for PaymentGatewayDown never runs for PaymentGatewayDown" in message
    assert "the fallback handler sorry for its base class Exception takes it first" in message
    assert "on_error hook" in message
    assert caught[0].filename == __file__  # it points at the registration


def test_a_fallback_registered_after_the_side_effect_handler_is_warned_about_too() -> None:
    exc = ExceptionMiddleware(handlers={PaymentGatewayDown: page_payments})

    with pytest.warns(ShadowedHandlerWarning, match="page_payments for PaymentGatewayDown"):
        exc.add_handler(Exception, publish=True)(sorry)


def test_the_constructor_warns_of_the_pairs_it_shadows() -> None:
    with pytest.warns(ShadowedHandlerWarning, match="page_payments"):
        ExceptionMiddleware(
            handlers={PaymentGatewayDown: page_payments}, publish_handlers={Exception: sorry}
        )


def test_each_shadowed_pair_is_warned_about_once(no_warnings: None) -> None:
    with pytest.warns(ShadowedHandlerWarning):
        exc = ExceptionMiddleware(
            handlers={PaymentGatewayDown: page_payments}, publish_handlers={Exception: sorry}
        )

    exc.add_handler(KeyError, publish=True)(sorry)  # raises under no_warnings if warned again


def test_shadowed_lists_every_side_effect_handler_that_never_runs() -> None:
    with pytest.warns(ShadowedHandlerWarning):
        exc = ExceptionMiddleware(
            handlers={PaymentGatewayDown: page_payments, KeyError: page_payments},
            publish_handlers={ConnectionError: sorry},
        )

    assert exc.shadowed() == [
        (
            Resolution(page_payments, False, PaymentGatewayDown),
            Resolution(sorry, True, ConnectionError),
        )
    ]


def test_a_class_in_both_maps_is_not_shadowed(no_warnings: None) -> None:
    # FastStream's idiom: the side-effect handler serves the errors with no result to replace
    exc = ExceptionMiddleware(
        handlers={PaymentGatewayDown: page_payments},
        publish_handlers={PaymentGatewayDown: sorry},
    )

    assert exc.shadowed() == []


def test_a_pass_through_shadows_nothing(no_warnings: None) -> None:
    exc = ExceptionMiddleware(
        handlers={PaymentGatewayDown: page_payments}, publish_handlers={Exception: reraise}
    )

    assert exc.shadowed() == []


def test_shadowed_counts_a_frameworks_fallbacks_when_asked(no_warnings: None) -> None:
    framework = Defaults("framework", publish_handlers={ConnectionError: sorry})
    exc = ExceptionMiddleware(handlers={PaymentGatewayDown: page_payments})

    assert exc.shadowed() == []
    [(hidden, by)] = exc.shadowed(defaults=framework)
    assert (hidden.handler, by.key) == (page_payments, ConnectionError)


# -- side-effect handlers that return a value -----------------------------------------------


def test_a_side_effect_handler_typed_to_return_a_value_is_warned_about() -> None:
    exc = ExceptionMiddleware()

    with pytest.warns(DroppedValueWarning) as caught:
        exc.add_handler(KeyError)(sorry)  # type: ignore[type-var]  # mypy refuses it too

    message = str(caught[0].message)
    assert "registered for KeyError as a side-effect handler, but it returns dict" in message
    assert "publish=True" in message
    assert caught[0].filename == __file__


def test_a_fallback_typed_to_return_a_value_is_not_warned_about(no_warnings: None) -> None:
    ExceptionMiddleware().add_handler(KeyError, publish=True)(sorry)


def test_a_side_effect_handler_typed_none_is_not_warned_about(no_warnings: None) -> None:
    ExceptionMiddleware(handlers={PaymentGatewayDown: page_payments})


async def test_an_untyped_side_effect_handler_returning_a_value_is_warned_about_then() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: lambda error: {"error": "missing"}})

    with pytest.warns(DroppedValueWarning, match="returned {'error': 'missing'} for a KeyError"):
        outcome = await exc.handle(KeyError("k"))

    assert outcome.value is None  # dropped, as the warning says


async def test_a_fallback_whose_value_a_group_sets_aside_is_not_warned_about(
    no_warnings: None,
) -> None:
    exc = ExceptionMiddleware(publish_handlers={KeyError: lambda error: "set aside"})

    outcome = await exc.handle(ExceptionGroup("g", [KeyError(1), KeyError(2)]))

    assert outcome.published


# -- parameters that nothing can fill -------------------------------------------------------

WEB = Defaults("web", supplies=("request", "websocket", "correlation_id"))
QUEUE = Defaults("queue", supplies=("message", "correlation_id"))


async def typo(error: KeyError, requets: Any) -> None:
    """`request` misspelt."""


async def untyped_typo(error, requets):  # type: ignore[no-untyped-def]
    """`request` misspelt, and no annotation to check the key against."""


def test_plugging_in_refuses_a_parameter_no_framework_supplies() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo})

    with pytest.raises(TypeError) as caught:
        exc.plug_in(WEB)

    message = str(caught.value)
    assert "cannot register tests.test_mistakes.typo for KeyError" in message
    assert "nothing fills its parameter 'requets'" in message
    assert "web supplies correlation_id, request, websocket" in message
    assert "did you mean 'request'?" in message
    assert "Context(...) or Depends(...)" in message


def test_once_plugged_a_registration_refuses_it_and_changes_nothing() -> None:
    exc = ExceptionMiddleware()
    exc.plug_in(WEB)

    with pytest.raises(TypeError, match="did you mean 'request'"):
        exc.add_handler(KeyError)(typo)

    assert exc.handlers == {}


def test_a_refused_plug_in_leaves_the_registry_unplugged() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo})
    with pytest.raises(TypeError):
        exc.plug_in(WEB)

    exc.add_handler(IndexError)(untyped_typo)  # still unplugged: nothing to check against

    assert set(exc.handlers) == {KeyError, IndexError}


def test_an_unplugged_registry_takes_any_parameter_name() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo})

    assert exc.handlers == {KeyError: typo}


async def with_a_default(error: KeyError, requets: Any = None) -> None: ...


async def with_context(error: KeyError, requets: Any = Context("request")) -> None: ...


def a_clock() -> int:
    return 0


async def with_depends(error: KeyError, now: int = Depends(a_clock)) -> None: ...


async def starlette_style(conn: Any, error: KeyError) -> None: ...


@pytest.mark.parametrize("handler", [with_a_default, with_context, with_depends, starlette_style])
def test_a_parameter_with_a_default_context_depends_or_before_the_error_is_accepted(
    handler: Any,
) -> None:
    exc = ExceptionMiddleware(handlers={KeyError: handler})

    exc.plug_in(WEB)


async def needs_message(error: KeyError, message: Any) -> None: ...


async def needs_both(error: KeyError, message: Any, websocket: Any) -> None: ...


async def on_lookup_message(error: LookupError, message: Any) -> None: ...


def test_a_registry_in_two_frameworks_takes_a_name_either_supplies() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: on_lookup_message})
    exc.plug_in(WEB)  # `message` is QUEUE's, a framework the registry may be plugged into next
    exc.plug_in(QUEUE)

    exc.add_handler(IndexError)(on_lookup_message)

    assert set(exc.handlers) == {KeyError, IndexError}


def test_a_handler_needing_names_no_single_framework_supplies_together_is_refused() -> None:
    exc = ExceptionMiddleware()
    exc.plug_in(WEB)
    exc.plug_in(QUEUE)

    with pytest.raises(TypeError, match=r"no framework it serves supplies all of its parameters"):
        exc.add_handler(KeyError)(needs_both)


async def log_lookup(error: LookupError) -> None: ...


async def test_a_handler_for_a_framework_specific_name_runs_only_where_it_is_filled() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: needs_message, LookupError: log_lookup})

    assert exc.resolve(KeyError, defaults=QUEUE) == Resolution(needs_message, False, KeyError)
    # where no `message` is supplied, the next candidate takes the error
    assert exc.resolve(KeyError, defaults=WEB) == Resolution(log_lookup, False, LookupError)
    outcome = await exc.handle(KeyError("k"), defaults=WEB, request=object())
    assert outcome.handler is log_lookup


async def test_a_missing_context_value_names_the_values_there_are() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo}, logger=None)

    with pytest.raises(LookupError) as caught:
        await exc.handle(KeyError("k"), request="r", correlation_id="c")

    assert "no context value 'requets'" in str(caught.value)
    assert "the context has correlation_id, request" in str(caught.value)


def test_plug_in_takes_a_frameworks_defaults() -> None:
    with pytest.raises(TypeError, match=r"plug_in\(\) takes an excepthub.Defaults, got 'web'"):
        ExceptionMiddleware().plug_in("web")  # type: ignore[arg-type]


def test_defaults_supplies_takes_names_not_one_string() -> None:
    with pytest.raises(TypeError, match="supplies must be an iterable of context names"):
        Defaults("web", supplies="request")


# -- an annotation that does not match the keys ---------------------------------------------


async def on_key_error(error: KeyError) -> None: ...


def test_a_handler_annotated_for_another_class_is_refused() -> None:
    exc = ExceptionMiddleware()

    with pytest.raises(TypeError) as caught:
        exc.add_handler(ValueError)(on_key_error)

    message = str(caught.value)
    assert "cannot register tests.test_mistakes.on_key_error for ValueError" in message
    assert "its error parameter is annotated KeyError" in message
    assert "annotate it ValueError" in message
    assert exc.handlers == {}


def test_a_tuple_key_is_refused_for_the_class_the_annotation_does_not_cover() -> None:
    with pytest.raises(
        TypeError, match="for IndexError: its error parameter is annotated KeyError"
    ):
        ExceptionMiddleware().add_handler((KeyError, IndexError))(on_key_error)


async def on_either(error: KeyError | IndexError) -> None: ...


async def on_lookup(error: LookupError) -> None: ...


@pytest.mark.parametrize("handler", [on_either, on_lookup])
def test_a_handler_annotated_with_a_base_class_or_a_union_is_accepted(handler: Any) -> None:
    exc = ExceptionMiddleware()

    exc.add_handler((KeyError, IndexError))(handler)

    assert set(exc.handlers) == {KeyError, IndexError}


# -- handle() of something that is not an exception -----------------------------------------


def test_handle_of_a_string_names_what_handle_takes() -> None:
    exc = ExceptionMiddleware()

    with pytest.raises(TypeError, match=r"handle\(\) takes the exception to handle, got 'oops'"):
        exc.handle("oops")  # type: ignore[arg-type, unused-coroutine]


# -- a registry where a framework expects a middleware --------------------------------------


def test_a_registry_unpacked_as_a_middleware_names_the_fastapi_plug_in() -> None:
    with pytest.raises(TypeError, match=r"excepthub_fastapi\.middleware\(exc\)"):
        _cls, _args, _kwargs = ExceptionMiddleware()  # type: ignore[misc]


def test_a_registry_called_with_no_framework_signature_names_every_plug_in() -> None:
    registry: Any = ExceptionMiddleware()

    with pytest.raises(TypeError) as caught:
        registry()

    assert "excepthub_fastapi.middleware(exc)" in str(caught.value)
    assert "excepthub_faststream.middleware(exc)" in str(caught.value)
    assert "excepthub_fastmcp.middleware(exc)" in str(caught.value)


# -- a fallback value the adapter cannot send ------------------------------------------------


def refuse(value: Any, error: BaseException) -> Any:
    raise ValueError(f"cannot send {value!r}")


async def test_a_value_that_cannot_be_converted_is_failed_and_answered_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="excepthub")
    exc = ExceptionMiddleware(publish_handlers={KeyError: sorry})
    error = KeyError("k")

    outcome = await exc.handle(error, convert=refuse)

    assert (outcome.published, outcome.value, outcome.error) == (False, None, error)
    assert exc.get_error_stats() == {"KeyError": {"failed": 1}}
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "KeyError failed by sorry: its value could not be sent "
        "(ValueError: cannot send {'error': 'sorry'})"
    )
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)  # the conversion's error...
    assert record.exc_info[1].__context__ is error  # ...with the original behind it


async def test_convert_turns_a_fallback_value_into_what_is_sent() -> None:
    exc = ExceptionMiddleware(publish_handlers={KeyError: sorry})

    async def as_text(value: Any, error: BaseException) -> str:
        return f"{type(error).__name__}: {value['error']}"

    outcome = await exc.handle(KeyError("k"), convert=as_text)

    assert (outcome.published, outcome.value) == (True, "KeyError: sorry")
    assert exc.get_error_stats() == {"KeyError": {"published": 1}}


async def test_convert_is_not_asked_about_a_side_effect_handler() -> None:
    exc = ExceptionMiddleware(handlers={PaymentGatewayDown: page_payments})

    outcome = await exc.handle(PaymentGatewayDown(), convert=refuse)

    assert exc.get_error_stats() == {f"{__name__}.PaymentGatewayDown": {"handled": 1}}
    assert not outcome.published
