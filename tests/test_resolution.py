"""Resolution: the nearest class in the MRO wins, fallback handlers first, memoised, layered.

`resolve` answers which handler an exception class reaches; `handle` goes where it says.
"""

from __future__ import annotations

import asyncio

import pytest

from excepthub import Defaults, ExceptionMiddleware, Resolution, ShadowedHandlerWarning, reraise


def general(error: Exception) -> None: ...


def other(error: Exception) -> None: ...


def fallback(error: Exception) -> str:
    return "fallback"


def framework_default(error: Exception) -> None: ...


class Base(Exception):
    pass


class Left(Base):
    pass


class Right(Base):
    pass


class Diamond(Left, Right):
    pass


class FrameworkError(Exception):
    pass


class FrameworkSignal(FrameworkError):
    pass


FRAMEWORK = Defaults(
    "framework",
    handlers={FrameworkError: framework_default},
    publish_handlers={FrameworkSignal: reraise},
)


def test_nearest_class_in_the_mro_wins() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general, LookupError: other})

    assert exc.resolve(KeyError) == Resolution(other, False, LookupError)


def test_exact_class_wins_over_its_ancestors() -> None:
    exc = ExceptionMiddleware(handlers={LookupError: general, KeyError: other})

    assert exc.resolve(KeyError) == Resolution(other, False, KeyError)


def test_fallback_handler_wins_over_a_nearer_side_effect_handler() -> None:
    with pytest.warns(ShadowedHandlerWarning):  # the side-effect handler never runs: said
        exc = ExceptionMiddleware(
            handlers={KeyError: general}, publish_handlers={Exception: fallback}
        )

    assert exc.resolve(KeyError) == Resolution(fallback, True, Exception)


def test_side_effect_handler_answers_where_no_fallback_handler_matches() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general}, publish_handlers={OSError: fallback})

    assert exc.resolve(KeyError) == Resolution(general, False, Exception)


def test_class_without_a_matching_handler_resolves_to_none() -> None:
    exc = ExceptionMiddleware(handlers={LookupError: general})

    assert exc.resolve(ValueError) is None


def test_registration_order_does_not_matter() -> None:
    first = ExceptionMiddleware()
    first.add_handler(Exception)(general)
    first.add_handler(LookupError)(other)
    second = ExceptionMiddleware()
    second.add_handler(LookupError)(other)
    second.add_handler(Exception)(general)

    assert (
        first.resolve(KeyError) == second.resolve(KeyError) == Resolution(other, False, LookupError)
    )


def test_multiple_inheritance_follows_the_mro() -> None:
    exc = ExceptionMiddleware(handlers={Right: general, Base: other})

    assert exc.resolve(Diamond) == Resolution(general, False, Right)  # Diamond, Left, Right, Base


def test_registration_after_a_lookup_changes_the_next_answer() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general})
    assert exc.resolve(KeyError) == Resolution(general, False, Exception)  # now memoised

    exc.add_handler(KeyError)(other)

    assert exc.resolve(KeyError) == Resolution(other, False, KeyError)


@pytest.mark.parametrize(
    "cls", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError, BaseException]
)
def test_base_exception_only_class_never_resolves(cls: type[BaseException]) -> None:
    exc = ExceptionMiddleware(handlers={Exception: general}, publish_handlers={Exception: fallback})

    assert exc.resolve(cls) is None


def test_group_class_resolves_only_to_handlers_keyed_on_group_classes() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general})

    assert exc.resolve(ExceptionGroup) is None


def test_group_class_resolves_to_a_group_handler() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general, ExceptionGroup: other})

    assert exc.resolve(ExceptionGroup) == Resolution(other, False, ExceptionGroup)


def test_resolve_rejects_what_is_neither_an_exception_nor_its_class() -> None:
    exc = ExceptionMiddleware()

    with pytest.raises(TypeError, match="resolve\\(\\) takes an exception or an exception class"):
        exc.resolve("ValueError")  # type: ignore[arg-type]


def test_resolve_with_side_effect_handlers_only_leaves_fallbacks_out() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general}, publish_handlers={KeyError: fallback})

    assert exc.resolve(KeyError, publish=False) == Resolution(general, False, Exception)


# -- framework defaults, layered under the user's handlers ---------------------------------


def test_framework_default_wins_over_a_broad_user_handler() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general})

    assert exc.resolve(FrameworkError, defaults=FRAMEWORK) == Resolution(
        framework_default, False, FrameworkError
    )


def test_user_handler_nearer_than_a_default_wins() -> None:
    class AppError(FrameworkError):
        pass

    exc = ExceptionMiddleware(handlers={AppError: general})

    assert exc.resolve(AppError, defaults=FRAMEWORK) == Resolution(general, False, AppError)


def test_user_key_replaces_the_default_in_both_maps() -> None:
    exc = ExceptionMiddleware(handlers={FrameworkSignal: general})

    # the default fallback for FrameworkSignal would otherwise win over any side-effect handler
    assert exc.resolve(FrameworkSignal, defaults=FRAMEWORK) == Resolution(
        general, False, FrameworkSignal
    )


def test_defaults_apply_only_where_they_are_passed() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general})

    assert exc.resolve(FrameworkError) == Resolution(general, False, Exception)


def test_each_layering_keeps_its_own_answers() -> None:
    other_framework = Defaults("other", handlers={FrameworkError: other})
    exc = ExceptionMiddleware(handlers={Exception: general})

    answers = [
        exc.resolve(FrameworkError, defaults=FRAMEWORK),
        exc.resolve(FrameworkError, defaults=other_framework),
        exc.resolve(FrameworkError),
    ]
    again = [  # now every answer comes from a memo: none may leak into another layering
        exc.resolve(FrameworkError, defaults=FRAMEWORK),
        exc.resolve(FrameworkError, defaults=other_framework),
        exc.resolve(FrameworkError),
    ]

    assert [a.handler for a in answers if a] == [framework_default, other, general]
    assert again == answers


def test_registration_clears_the_memo_of_every_layering() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general})
    assert exc.resolve(FrameworkSignal, defaults=FRAMEWORK) is not None  # memoised

    exc.add_handler(FrameworkSignal)(other)

    assert exc.resolve(FrameworkSignal, defaults=FRAMEWORK) == Resolution(
        other, False, FrameworkSignal
    )


def test_defaults_maps_are_read_only() -> None:
    with pytest.raises(TypeError):
        FRAMEWORK.handlers[ValueError] = general  # type: ignore[index]


def test_defaults_are_not_user_handlers() -> None:
    exc = ExceptionMiddleware(handlers={Exception: general})
    exc.resolve(FrameworkError, defaults=FRAMEWORK)

    assert dict(exc.handlers) == {Exception: general}
    assert dict(exc.publish_handlers) == {}


class _Control(Exception):
    """A framework's control-flow base class, passed through by its defaults."""


class _Skip(_Control):
    pass


_PASS_THROUGH = Defaults(
    "control", handlers={_Control: reraise}, publish_handlers={_Control: reraise}
)


def test_a_side_effect_handler_for_a_subclass_beats_a_pass_through_default_on_its_base() -> None:
    def on_skip(error: _Skip) -> None: ...

    exc = ExceptionMiddleware(handlers={_Skip: on_skip})
    resolution = exc.resolve(_Skip, defaults=_PASS_THROUGH)
    assert resolution is not None
    assert resolution.handler is on_skip


def test_a_pass_through_default_beats_a_farther_user_fallback() -> None:
    def fallback(error: Exception) -> str:
        return "fallback"

    exc = ExceptionMiddleware(publish_handlers={Exception: fallback})
    only_in_handlers = Defaults("control", handlers={_Control: reraise})
    for defaults in (_PASS_THROUGH, only_in_handlers):
        resolution = exc.resolve(_Skip, defaults=defaults)
        assert resolution is not None
        assert resolution.handler is reraise
