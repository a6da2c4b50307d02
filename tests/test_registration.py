"""Registration: what `add_handler` and the constructor accept, and every way they refuse.

A refusal is a `TypeError` at registration that names what is wrong, and it leaves the
registry exactly as it was.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from excepthub import Defaults, ExceptionMiddleware, Resolution


def log_it(error: Exception) -> None:
    """A side-effect handler."""


def fallback(error: Exception) -> str:
    return "fallback"


def no_parameters() -> None:
    """Cannot take the exception."""


def keyword_only(*, error: Exception) -> None:
    """Cannot take the exception positionally."""


def generator_handler(error: Exception) -> Iterator[None]:
    yield


PROBES = (Exception, ValueError, KeyError, LookupError, OSError, ExceptionGroup)


def snapshot(exc: ExceptionMiddleware) -> tuple[Any, ...]:
    """Everything a registration could change, as seen from outside."""
    return (
        dict(exc.handlers),
        dict(exc.publish_handlers),
        [exc.resolve(cls) for cls in PROBES],
    )


@pytest.fixture
def exc() -> ExceptionMiddleware:
    """A registry with one handler of each kind, so a bad registration has something to spoil."""
    return ExceptionMiddleware(handlers={LookupError: log_it}, publish_handlers={OSError: fallback})


# -- what registration accepts --------------------------------------------------------------


def test_add_handler_returns_the_function_unchanged(exc: ExceptionMiddleware) -> None:
    def on_value(error: ValueError) -> None: ...

    assert exc.add_handler(ValueError)(on_value) is on_value


def test_add_handler_registers_a_side_effect_handler_by_default(exc: ExceptionMiddleware) -> None:
    exc.add_handler(ValueError)(log_it)

    assert exc.handlers[ValueError] is log_it
    assert ValueError not in exc.publish_handlers


def test_add_handler_with_publish_registers_a_fallback_handler(exc: ExceptionMiddleware) -> None:
    exc.add_handler(ValueError, publish=True)(fallback)

    assert exc.publish_handlers[ValueError] is fallback
    assert ValueError not in exc.handlers


def test_add_handler_takes_publish_positionally_like_faststream(exc: ExceptionMiddleware) -> None:
    exc.add_handler(ValueError, True)(fallback)  # faststream's `add_handler(exc, publish)`

    assert exc.publish_handlers[ValueError] is fallback


def test_add_handler_with_a_tuple_registers_every_class(exc: ExceptionMiddleware) -> None:
    exc.add_handler((ValueError, TypeError))(log_it)

    assert exc.handlers[ValueError] is log_it
    assert exc.handlers[TypeError] is log_it


def test_constructor_takes_a_tuple_key() -> None:
    exc = ExceptionMiddleware(handlers={(ValueError, TypeError): log_it})

    assert dict(exc.handlers) == {ValueError: log_it, TypeError: log_it}


def test_a_class_may_have_a_side_effect_and_a_fallback_handler(exc: ExceptionMiddleware) -> None:
    exc.add_handler(ValueError)(log_it)
    exc.add_handler(ValueError, publish=True)(fallback)

    assert exc.handlers[ValueError] is log_it
    assert exc.publish_handlers[ValueError] is fallback


def test_a_later_registration_replaces_the_handler_for_its_class(exc: ExceptionMiddleware) -> None:
    def second(error: Exception) -> None: ...

    exc.add_handler(LookupError)(second)

    assert exc.handlers[LookupError] is second
    assert exc.resolve(KeyError) == Resolution(second, False, LookupError)


def test_a_group_class_is_a_valid_key(exc: ExceptionMiddleware) -> None:
    class Batch(ExceptionGroup[Exception]):
        pass

    exc.add_handler((ExceptionGroup, Batch))(log_it)

    assert {ExceptionGroup, Batch} <= exc.handlers.keys()


def test_handlers_mapping_is_read_only(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError):
        exc.handlers[ValueError] = log_it  # type: ignore[index]


def test_publish_handlers_mapping_is_read_only(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError):
        exc.publish_handlers[ValueError] = fallback  # type: ignore[index]


def test_registry_without_maps_is_empty() -> None:
    exc = ExceptionMiddleware()

    assert dict(exc.handlers) == {}
    assert dict(exc.publish_handlers) == {}


def test_handler_may_be_any_callable_taking_one_positional_argument(
    exc: ExceptionMiddleware,
) -> None:
    class Callback:
        def __call__(self, error: Exception) -> None: ...

    callback = Callback()

    exc.add_handler(ValueError)(callback)

    assert exc.handlers[ValueError] is callback


# -- every TypeError, with its message -----------------------------------------------------


def test_non_class_key_is_a_type_error_naming_it(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="cannot register a handler for 'ValueError': it is not"):
        exc.add_handler("ValueError")  # type: ignore[call-overload]


def test_non_exception_class_key_is_a_type_error_naming_it(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="handler for <class 'int'>: it is not an exception class"):
        exc.add_handler(int)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "key",
    [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError, BaseException],
)
def test_base_exception_only_key_is_a_type_error_naming_it(
    exc: ExceptionMiddleware, key: type[BaseException]
) -> None:
    message = f"handler for {key.__qualname__}: it is a BaseException that is not an Exception"
    with pytest.raises(TypeError, match=re.escape(message)):
        exc.add_handler(key)  # type: ignore[call-overload]


def test_base_exception_group_key_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="BaseExceptionGroup: it is a BaseException that is not"):
        exc.add_handler(BaseExceptionGroup)  # type: ignore[call-overload]


def test_tuple_with_a_bad_member_is_a_type_error_naming_the_member(
    exc: ExceptionMiddleware,
) -> None:
    with pytest.raises(TypeError, match="cannot register a handler for 42: it is not an exception"):
        exc.add_handler((ValueError, 42))  # type: ignore[call-overload]


def test_tuple_with_a_base_exception_member_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="for KeyboardInterrupt: it is a BaseException"):
        exc.add_handler((ValueError, KeyboardInterrupt))  # type: ignore[call-overload]


def test_nested_tuple_key_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match=re.escape("for (<class 'ValueError'>,): it is not")):
        exc.add_handler(((ValueError,),))  # type: ignore[call-overload]


def test_empty_tuple_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="for an empty tuple of exception classes"):
        exc.add_handler(())


def test_non_callable_handler_is_a_type_error_naming_key_and_handler(
    exc: ExceptionMiddleware,
) -> None:
    with pytest.raises(TypeError, match=r"cannot register 'oops' for ValueError: .*not callable"):
        exc.add_handler(ValueError)("oops")  # type: ignore[type-var]


def test_handler_without_parameters_is_a_type_error_naming_key_and_handler(
    exc: ExceptionMiddleware,
) -> None:
    with pytest.raises(
        TypeError,
        match=r"cannot register <function no_parameters .*> for ValueError, KeyError: .*"
        r"cannot take the exception as its first positional argument",
    ):
        exc.add_handler((ValueError, KeyError))(no_parameters)


def test_handler_with_keyword_only_error_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="keyword_only cannot take the exception as its first"):
        exc.add_handler(ValueError)(keyword_only)


def test_generator_handler_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="generator_handler is a generator"):
        exc.add_handler(ValueError)(generator_handler)


def test_handler_without_a_signature_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match=r"cannot register <class 'int'> for ValueError: .*"):
        exc.add_handler(ValueError)(int)


def test_non_bool_publish_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="publish must be a bool, got 'yes'"):
        exc.add_handler(ValueError, publish="yes")  # type: ignore[call-overload]


def test_non_bool_inline_is_a_type_error(exc: ExceptionMiddleware) -> None:
    with pytest.raises(TypeError, match="inline must be a bool, got 1"):
        exc.add_handler(ValueError, inline=1)  # type: ignore[arg-type]


def test_constructor_rejects_a_non_mapping() -> None:
    with pytest.raises(TypeError, match="handlers must be a mapping of exception classes"):
        ExceptionMiddleware(handlers=[(ValueError, log_it)])  # type: ignore[arg-type]


def test_constructor_rejects_a_bad_key_naming_key_and_handler() -> None:
    with pytest.raises(
        TypeError,
        match=r"publish_handlers: cannot register a handler for 'x': it is not an exception "
        r"class \(handler <function fallback",
    ):
        ExceptionMiddleware(publish_handlers={"x": fallback})  # type: ignore[dict-item]


def test_constructor_rejects_a_base_exception_key() -> None:
    with pytest.raises(TypeError, match="handlers: cannot register a handler for SystemExit"):
        ExceptionMiddleware(handlers={SystemExit: log_it})  # type: ignore[dict-item]


def test_constructor_rejects_a_non_callable_naming_key_and_handler() -> None:
    with pytest.raises(TypeError, match="handlers: cannot register None for ValueError: it is not"):
        ExceptionMiddleware(handlers={ValueError: None})  # type: ignore[dict-item]


def test_constructor_rejects_a_handler_that_cannot_take_the_exception() -> None:
    with pytest.raises(TypeError, match=r"for KeyError: handler .*no_parameters cannot take"):
        ExceptionMiddleware(handlers={KeyError: no_parameters})


def test_constructor_rejects_non_bool_inline() -> None:
    with pytest.raises(TypeError, match="inline must be a bool"):
        ExceptionMiddleware(inline="no")  # type: ignore[arg-type]


def test_constructor_rejects_a_provider_that_is_not_one() -> None:
    with pytest.raises(TypeError, match=r"provider must be a fast_depends\.Provider"):
        ExceptionMiddleware(provider=object())  # type: ignore[arg-type]


def test_defaults_reject_a_bad_key() -> None:
    with pytest.raises(
        TypeError, match="handlers: cannot register a handler for KeyboardInterrupt"
    ):
        Defaults("framework", handlers={KeyboardInterrupt: log_it})  # type: ignore[dict-item]


# -- a refused registration changes nothing ------------------------------------------------

REFUSALS: dict[str, Callable[[ExceptionMiddleware], object]] = {
    "non-class key": lambda exc: exc.add_handler("x")(log_it),  # type: ignore[call-overload]
    "non-exception class": lambda exc: exc.add_handler(int)(log_it),  # type: ignore[call-overload]
    "BaseException-only class": (
        lambda exc: exc.add_handler(KeyboardInterrupt)(log_it)  # type: ignore[call-overload]
    ),
    "tuple with a bad member": (
        lambda exc: exc.add_handler((ValueError, KeyboardInterrupt))(log_it)  # type: ignore[call-overload]
    ),
    "empty tuple": lambda exc: exc.add_handler(())(log_it),
    "non-callable": lambda exc: exc.add_handler((ValueError, KeyError))(42),  # type: ignore[type-var]
    "no positional parameter": lambda exc: exc.add_handler((ValueError, KeyError))(keyword_only),
    "bad publish flag": lambda exc: exc.add_handler(ValueError, publish=1)(fallback),  # type: ignore[call-overload]
}


@pytest.mark.parametrize("attempt", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_registration_leaves_the_registry_as_it_was(
    exc: ExceptionMiddleware, attempt: Callable[[ExceptionMiddleware], object]
) -> None:
    exc.resolve(KeyError)  # a memo entry, which a refusal must not disturb either
    before = snapshot(exc)

    with pytest.raises(TypeError):
        attempt(exc)

    assert snapshot(exc) == before
