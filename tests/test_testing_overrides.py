"""Overrides: a handler (or every handler for a class) replaced for a block, a dependency
through the registry's provider, and every registration put back when the block ends."""

from __future__ import annotations

import pytest

from excepthub import Depends, DroppedValueWarning, ExceptionMiddleware
from excepthub.testing import overriding

pytestmark = pytest.mark.anyio


class PaymentError(Exception):
    pass


class CardDeclined(PaymentError):
    pass


class Refused(PaymentError):
    pass


async def payment_failed(error: PaymentError) -> str:
    return "real fallback"


async def log_payment(error: PaymentError) -> None:
    return None


async def fake(error: Exception):  # type: ignore[no-untyped-def]  # both kinds: untyped
    return "fake"


def real_pager() -> str:
    raise RuntimeError("would page a human")


pages: list[str] = []


async def page(error: ConnectionError, pager: str = Depends(real_pager)) -> None:
    pages.append(pager)


def registry() -> ExceptionMiddleware:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler((CardDeclined, Refused), publish=True)(payment_failed)
    exc.add_handler(PaymentError)(log_payment)
    exc.add_handler(ConnectionError)(page)
    return exc


async def test_a_handler_is_replaced_for_every_class_it_is_registered_for() -> None:
    exc = registry()

    with overriding(exc) as overrides:
        overrides[payment_failed] = fake
        declined, refused = await exc.handle(CardDeclined()), await exc.handle(Refused())

    assert (declined.value, refused.value) == ("fake", "fake")
    assert exc.publish_handlers == {CardDeclined: payment_failed, Refused: payment_failed}


async def test_a_class_has_its_registrations_replaced_and_only_its_own() -> None:
    exc = registry()

    with overriding(exc) as overrides:
        overrides[CardDeclined] = fake
        assert exc.resolve(CardDeclined).handler is fake  # type: ignore[union-attr]
        assert exc.resolve(Refused).handler is payment_failed  # type: ignore[union-attr]
        assert (await exc.handle(CardDeclined())).published  # still a fallback: the same kind

    assert exc.resolve(CardDeclined).handler is payment_failed  # type: ignore[union-attr]


async def test_a_class_in_both_maps_has_both_replaced() -> None:
    exc = ExceptionMiddleware(
        handlers={PaymentError: log_payment}, publish_handlers={PaymentError: payment_failed}
    )

    with overriding(exc) as overrides:
        overrides[PaymentError] = fake
        assert (dict(exc.handlers), dict(exc.publish_handlers)) == (
            {PaymentError: fake},
            {PaymentError: fake},
        )

    assert (dict(exc.handlers), dict(exc.publish_handlers)) == (
        {PaymentError: log_payment},
        {PaymentError: payment_failed},
    )


async def test_what_is_registered_inside_the_block_is_undone() -> None:
    exc = registry()

    with overriding(exc):
        exc.add_handler(TimeoutError, publish=True)(fake)
        assert (await exc.handle(TimeoutError())).value == "fake"

    assert exc.resolve(TimeoutError) is None
    with pytest.raises(TimeoutError):
        await exc.handle(TimeoutError())


async def test_the_memo_of_the_restored_registry_answers_as_before() -> None:
    exc = registry()
    assert (await exc.handle(CardDeclined())).value == "real fallback"  # memoised

    with overriding(exc) as overrides:
        overrides[payment_failed] = fake
        assert (await exc.handle(CardDeclined())).value == "fake"

    assert (await exc.handle(CardDeclined())).value == "real fallback"


async def test_overrides_nest_and_unwind_in_order() -> None:
    exc = registry()

    with overriding(exc) as outer:
        outer[payment_failed] = fake
        with overriding(exc) as inner:
            inner[CardDeclined] = log_payment_value
            assert (await exc.handle(CardDeclined())).value == "inner"
        assert (await exc.handle(CardDeclined())).value == "fake"

    assert (await exc.handle(CardDeclined())).value == "real fallback"


async def log_payment_value(error: PaymentError) -> str:
    return "inner"


async def test_a_dependency_is_overridden_through_the_provider_until_the_block_ends() -> None:
    exc = registry()
    pages.clear()

    with overriding(exc) as overrides:
        overrides.dependency(real_pager, lambda: "fake pager")
        await exc.handle(ConnectionError())

    assert pages == ["fake pager"]
    assert real_pager not in exc.provider.overrides
    with pytest.raises(RuntimeError, match="would page a human"):
        await exc.handle(ConnectionError())


async def test_a_dependency_override_made_before_the_block_comes_back() -> None:
    exc = registry()
    pages.clear()
    exc.provider.override(real_pager, lambda: "suite pager")

    with overriding(exc) as overrides:
        overrides.dependency(real_pager, lambda: "test pager")
        await exc.handle(ConnectionError())
    await exc.handle(ConnectionError())

    assert pages == ["test pager", "suite pager"]


def test_an_unknown_handler_is_refused_naming_the_classes_there_are() -> None:
    exc = registry()

    with overriding(exc) as overrides, pytest.raises(LookupError) as raised:
        overrides[fake] = payment_failed

    assert "fake is not a handler of this registry" in str(raised.value)
    assert "CardDeclined" in str(raised.value)
    assert "overrides.dependency" in str(raised.value)


def test_an_unregistered_class_is_refused_naming_the_handler_its_errors_reach() -> None:
    class Expired(PaymentError):
        pass

    exc = registry()

    with overriding(exc) as overrides, pytest.raises(LookupError) as raised:
        overrides[Expired] = fake

    message = str(raised.value)
    assert "no handler is registered for" in message
    assert "Expired" in message
    assert "log_payment, registered for PaymentError" in message
    assert "exc.add_handler(" in message


def test_a_replacement_is_checked_as_add_handler_checks_it() -> None:
    exc = registry()

    async def takes_keys(error: KeyError) -> None:
        return None

    with overriding(exc) as overrides, pytest.raises(TypeError, match="annotated KeyError"):
        overrides[PaymentError] = takes_keys

    assert exc.handlers[PaymentError] is log_payment


def test_overrides_outside_the_block_are_refused() -> None:
    overrides = overriding(registry())

    with pytest.raises(RuntimeError, match="inside `with overriding"):
        overrides[payment_failed] = fake


async def test_the_fixture_overrides_until_the_test_ends(excepthub_overrides: object) -> None:
    exc = registry()
    assert callable(excepthub_overrides)

    excepthub_overrides(exc)[payment_failed] = fake

    assert (await exc.handle(CardDeclined())).value == "fake"


def test_a_registration_warning_points_at_the_override_in_the_test() -> None:
    exc = registry()

    async def returns_a_value(error: PaymentError) -> str:
        return "dropped"

    with overriding(exc) as overrides, pytest.warns(DroppedValueWarning) as caught:
        overrides[log_payment] = returns_a_value

    assert caught[0].filename == __file__
