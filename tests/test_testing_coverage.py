"""Coverage: the exception classes of a package no handler takes, and the handlers that never
run, found in a package with a mistake of each kind planted in it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from excepthub import Defaults, ExceptionMiddleware, reraise
from excepthub.testing import coverage, exception_classes_of

# the planted mistake is a shadowed handler, which registration warns about
pytestmark = pytest.mark.filterwarnings("ignore::excepthub.ShadowedHandlerWarning")

SHOP = {
    "__init__.py": "from .payments import PaymentError  # imported here, defined there\n",
    "payments.py": """
        class PaymentError(Exception): ...
        class CardDeclined(PaymentError): ...
        class NotAnError: ...
    """,
    "orders/__init__.py": "",
    "orders/errors.py": """
        from shop_under_test.payments import CardDeclined
        class OutOfStock(Exception): ...
        class Backordered(OutOfStock): ...
        class AddressInvalid(ValueError): ...  # the planted mistake: nothing takes it
        class Cancelled(BaseException): ...  # not an Exception: never handled, not listed
    """,
}


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A package `shop_under_test` on disk, imported fresh."""
    for name, source in SHOP.items():
        path = tmp_path / "shop_under_test" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_under_test

    yield shop_under_test
    for module in [m for m in sys.modules if m.startswith("shop_under_test")]:
        del sys.modules[module]


def handlers_for(shop: ModuleType) -> ExceptionMiddleware:
    from shop_under_test.orders.errors import OutOfStock
    from shop_under_test.payments import CardDeclined, PaymentError

    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(PaymentError, publish=True)(lambda error: {"error": "payment"})
    exc.add_handler(OutOfStock)(lambda error: None)
    # the planted mistake: a fallback for PaymentError takes every CardDeclined first
    exc.add_handler(CardDeclined)(alert_on_decline)
    return exc


def alert_on_decline(error: Exception) -> None: ...


def test_the_classes_defined_in_a_package_are_walked_from_its_module(shop: ModuleType) -> None:
    names = [cls.__qualname__ for cls in exception_classes_of(shop)]

    assert sorted(names) == [
        "AddressInvalid",
        "Backordered",
        "CardDeclined",
        "OutOfStock",
        "PaymentError",
    ]


def test_a_class_no_handler_takes_is_reported(shop: ModuleType) -> None:
    report = coverage(handlers_for(shop), shop)

    assert [cls.__qualname__ for cls in report.unhandled] == ["AddressInvalid"]
    assert not report.complete


def test_a_handler_that_never_runs_is_reported_with_the_one_that_takes_its_errors(
    shop: ModuleType,
) -> None:
    report = coverage(handlers_for(shop), "shop_under_test")

    ((hidden, by),) = report.shadowed
    assert (hidden.handler, hidden.key.__qualname__) == (alert_on_decline, "CardDeclined")
    assert (by.publish, by.key.__qualname__) == (True, "PaymentError")


def test_with_both_mistakes_fixed_the_report_is_complete(shop: ModuleType) -> None:
    from shop_under_test.orders.errors import AddressInvalid
    from shop_under_test.payments import CardDeclined

    exc = handlers_for(shop)
    exc.add_handler(AddressInvalid, publish=True)(lambda error: {"error": "address"})
    exc.add_handler(CardDeclined, publish=True)(lambda error: {"error": "declined"})

    report = coverage(exc, shop)

    assert (report.unhandled, report.shadowed, report.complete) == ((), (), True)


def test_a_catch_all_takes_everything_unless_it_is_ignored(shop: ModuleType) -> None:
    exc = handlers_for(shop)
    exc.add_handler(Exception)(lambda error: None)

    assert coverage(exc, shop).unhandled == ()
    unhandled = coverage(exc, shop, ignore=[Exception]).unhandled
    assert [cls.__qualname__ for cls in unhandled] == ["AddressInvalid"]


def test_a_pass_through_takes_nothing(shop: ModuleType) -> None:
    from shop_under_test.orders.errors import AddressInvalid

    exc = handlers_for(shop)
    exc.add_handler(AddressInvalid)(reraise)

    assert [cls.__qualname__ for cls in coverage(exc, shop).unhandled] == ["AddressInvalid"]


def test_a_framework_default_counts_when_its_defaults_are_given(shop: ModuleType) -> None:
    exc = handlers_for(shop)
    framework = Defaults("framework", handlers={ValueError: lambda error: None})

    assert coverage(exc, shop).unhandled != ()
    assert coverage(exc, shop, defaults=framework).unhandled == ()


def test_bad_arguments_are_refused_with_the_fix(shop: ModuleType) -> None:
    exc = handlers_for(shop)

    with pytest.raises(TypeError, match="needs the packages to walk"):
        coverage(exc)
    with pytest.raises(TypeError, match="walks packages"):
        coverage(exc, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes an excepthub\.ExceptionMiddleware"):
        coverage(shop, shop)  # type: ignore[arg-type]
