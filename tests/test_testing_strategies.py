"""The public strategies draw what they promise (registry keys, runtime subclasses with multiple
inheritance and diamonds, nested groups), and the reference resolver is the plain rule."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings

from excepthub import ExceptionMiddleware, Resolution, reraise
from excepthub.testing import (
    candidates,
    exception_classes,
    exception_groups,
    exception_hierarchies,
    exceptions,
    reference_resolve,
)

# hand-made registries shadow handlers on purpose
pytestmark = pytest.mark.filterwarnings("ignore::excepthub.ShadowedHandlerWarning")

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIND = settings(
    max_examples=500, deadline=None, database=None, phases=[Phase.generate]
)  # no shrink


class PaymentError(Exception):
    pass


class CardDeclined(PaymentError):
    pass


class Batch(ExceptionGroup[Exception]):
    """A group class with a handler of its own."""


class Stop(BaseException):
    """Like a cancellation: never handled."""


class NeedsArguments(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)


class Left(Exception):
    pass


class Right(Exception):
    pass


class LeftRight(Left, Right):
    pass


class RightLeft(Right, Left):
    pass  # LeftRight and RightLeft together have no consistent MRO


def on_payment(error: PaymentError) -> str:
    return "payment"


def on_lookup(error: LookupError) -> None: ...


def on_batch(error: Batch) -> None: ...


def on_any(error: Exception) -> None: ...


exc = ExceptionMiddleware(
    handlers={LookupError: on_lookup, Batch: on_batch, OSError: reraise},
    publish_handlers={PaymentError: on_payment},
    logger=None,
)


# -- the one property a user writes -----------------------------------------------------------


@SETTINGS
@given(exception_classes(exc, classes=[ValueError, KeyError, CardDeclined, Stop]))
def test_the_registry_agrees_with_the_rule_for_every_class(cls: type[BaseException]) -> None:
    assert exc.resolve(cls) == reference_resolve(exc, cls)


def test_the_rule_catches_a_registry_that_disagrees() -> None:
    class Wrong(ExceptionMiddleware):  # a planted bug: fallback handlers asked last
        def resolve(self, exc_type: type[BaseException], **kwargs: Any) -> Resolution | None:
            return super().resolve(exc_type, publish=False) or super().resolve(exc_type)

    wrong = Wrong(handlers={CardDeclined: on_any}, publish_handlers={PaymentError: on_payment})

    @settings(max_examples=100, deadline=None, database=None)
    @given(exception_classes(wrong))
    def agrees(cls: type[BaseException]) -> None:
        assert wrong.resolve(cls) == reference_resolve(wrong, cls)

    with pytest.raises(AssertionError):
        agrees()


# -- the reference resolver, on hand-made cases -------------------------------------------------


def test_the_nearest_fallback_wins_over_a_nearer_side_effect_handler() -> None:
    both = ExceptionMiddleware(
        handlers={CardDeclined: on_any}, publish_handlers={Exception: on_any}
    )

    assert reference_resolve(both, CardDeclined) == Resolution(on_any, True, Exception)
    assert reference_resolve(both, CardDeclined, publish=False) == Resolution(
        on_any, False, CardDeclined
    )


def test_candidates_are_fallbacks_nearest_first_then_side_effect_handlers() -> None:
    layered = ExceptionMiddleware(
        handlers={CardDeclined: on_any, Exception: on_any},
        publish_handlers={PaymentError: on_payment, Exception: on_any},
    )

    assert [(c.publish, c.key) for c in candidates(layered, CardDeclined)] == [
        (True, PaymentError),
        (True, Exception),
        (False, CardDeclined),
        (False, Exception),
    ]
    assert [c.key for c in candidates(layered, CardDeclined, ignore=[Exception])] == [
        PaymentError,
        CardDeclined,
    ]


def test_a_pass_through_is_placed_by_its_position_in_the_mro() -> None:
    passing = ExceptionMiddleware(
        handlers={FileNotFoundError: on_any, OSError: reraise},
        publish_handlers={Exception: on_any},
    )

    assert reference_resolve(passing, OSError) == Resolution(reraise, False, OSError)
    # the side-effect handler nearer than the pass-through is asked; the fallback past it never
    assert reference_resolve(passing, FileNotFoundError) == Resolution(
        on_any, False, FileNotFoundError
    )
    assert passing.resolve(OSError) == reference_resolve(passing, OSError)
    assert passing.resolve(FileNotFoundError) == reference_resolve(passing, FileNotFoundError)


def test_a_group_class_reaches_group_keys_only() -> None:
    grouped = ExceptionMiddleware(handlers={Exception: on_any, Batch: on_batch})

    assert reference_resolve(grouped, ExceptionGroup) is None
    assert reference_resolve(grouped, Batch) == Resolution(on_batch, False, Batch)


def test_a_base_exception_reaches_nothing() -> None:
    assert reference_resolve(exc, Stop) is None


def test_the_reference_resolver_refuses_what_is_not_an_exception_class() -> None:
    with pytest.raises(TypeError, match="takes an exception or an exception class"):
        reference_resolve(exc, "KeyError")  # type: ignore[arg-type]


# -- what the strategies draw ------------------------------------------------------------------


def test_classes_include_the_registry_keys_and_the_classes_given() -> None:
    drawn = find(
        exception_classes(exc, classes=[Stop], subclasses=False),
        lambda cls: cls is Stop,
        settings=FIND,
    )
    assert drawn is Stop
    assert find(exception_classes(exc), lambda cls: cls is Batch, settings=FIND) is Batch


def test_runtime_subclasses_have_several_bases() -> None:
    drawn = find(exception_classes(exc), lambda cls: len(cls.__bases__) >= 2, settings=FIND)
    assert all(issubclass(drawn, base) for base in drawn.__bases__)


def test_hierarchies_include_diamonds() -> None:
    def has_diamond(classes: list[type[BaseException]]) -> bool:
        made = set(classes)
        return any(
            len(set(b1.__mro__) & set(b2.__mro__) & made) > 0
            for cls in classes
            for b1 in cls.__bases__
            for b2 in cls.__bases__
            if b1 is not b2
        )

    diamond = find(exception_hierarchies((ValueError,)), has_diamond, settings=FIND)
    assert has_diamond(diamond)


@SETTINGS
@given(exception_hierarchies((LeftRight, RightLeft, OSError, ImportError), max_size=5))
def test_bases_without_a_consistent_mro_or_layout_are_skipped(
    classes: list[type[BaseException]],
) -> None:
    for cls in classes:
        assert not (issubclass(cls, LeftRight) and issubclass(cls, RightLeft))
        assert not (issubclass(cls, OSError) and issubclass(cls, ImportError))


@SETTINGS
@given(exceptions(classes=[NeedsArguments], groups=False))
def test_instances_are_made_even_where_the_constructor_wants_arguments(
    error: BaseException,
) -> None:
    assert isinstance(error, NeedsArguments)


@SETTINGS
@given(exception_groups(exc, classes=[Stop]))
def test_groups_hold_new_leaves_and_only_what_they_may_hold(
    group: BaseExceptionGroup[Any],
) -> None:
    found = list(_leaves(group))
    assert len({id(leaf) for leaf in found}) == len(found)  # every leaf its own object
    if any(not isinstance(leaf, Exception) for leaf in found):
        assert not isinstance(group, ExceptionGroup)


def test_groups_nest() -> None:
    nested = find(
        exception_groups(exc),
        lambda g: any(isinstance(e, BaseExceptionGroup) for e in g.exceptions),
        settings=FIND,
    )
    assert isinstance(nested, BaseExceptionGroup)


def test_group_classes_of_the_registry_make_groups() -> None:
    drawn = find(exception_groups(exc), lambda g: isinstance(g, Batch), settings=FIND)
    assert isinstance(drawn, Batch)


def test_exceptions_are_leaves_or_groups() -> None:
    group = find(exceptions(exc), lambda e: isinstance(e, BaseExceptionGroup), settings=FIND)
    leaf = find(exceptions(exc), lambda e: isinstance(e, PaymentError), settings=FIND)
    assert isinstance(group, BaseExceptionGroup)
    assert isinstance(leaf, PaymentError)


def test_nothing_to_draw_from_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="pass classes="):
        exception_classes(ExceptionMiddleware())
    with pytest.raises(TypeError, match="must be exception classes"):
        exceptions(classes=[int])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_bases >= 1"):
        exception_hierarchies(max_bases=0)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for child in error.exceptions for leaf in _leaves(child)]
    return [error]


def test_without_hypothesis_the_rest_works_and_the_strategies_say_what_to_install() -> None:
    code = """
import sys
sys.modules["hypothesis"] = None  # as if it were not installed
import anyio
from excepthub import ExceptionMiddleware
from excepthub.testing import recording
exc = ExceptionMiddleware(handlers={KeyError: print}, logger=None, inline=True)
with recording(exc) as events:
    anyio.run(exc.handle, KeyError("k"))
assert events.only.outcome == "handled"
try:
    from excepthub.testing import exceptions
except ImportError as error:
    print(error)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs hypothesis: pip install 'excepthub[testing]'" in out.stdout
