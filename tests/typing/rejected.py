"""Wrong uses of the public API: each line marked `# E: <code>` is an error for `mypy --strict`,
and no other line is (see test_typing.py)."""

from __future__ import annotations

from excepthub import ExceptionMiddleware

exc = ExceptionMiddleware()


@exc.add_handler(ValueError)  # E: type-var
def side_effect_returning_a_value(error: ValueError) -> int:
    return 1


@exc.add_handler(ValueError, publish=True)
def fallback(error: ValueError) -> int:
    return 1


text: str = fallback(ValueError())  # E: assignment

exc.add_handler("ValueError")  # E: call-overload
exc.add_handler(int)  # E: type-var
exc.add_handler(ValueError, publish="yes")  # E: call-overload
exc.add_handler(ValueError, inline=1)  # E: call-overload
exc.add_handler(ValueError)(42)  # E: type-var
ExceptionMiddleware(handlers={"ValueError": print})  # E: dict-item
exc.add_handler(ValueError, when=lambda error: error.status_code == 404)  # E: attr-defined
exc.add_handler(ValueError, when=42)  # E: call-overload
