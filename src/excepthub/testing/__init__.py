"""Testing a registry: property-test it, record which handler ran, override handlers.

```python
from excepthub.testing import coverage, exceptions, overriding, recording, reference_resolve
```

- `exceptions`, `exception_classes`, `exception_groups`, `exception_hierarchies`: hypothesis
  strategies for a registry's classes, runtime subclasses of them and nested groups (they need
  hypothesis: `pip install "excepthub[testing]"`);
- `reference_resolve`: the resolution rule in its plainest form, to compare `resolve` with;
- `recording`: the error events of a registry while a block runs;
- `overriding`: handlers (and dependencies) replaced for a block, then put back;
- `coverage`: the exception classes of a package no handler takes, and the handlers that never
  run.

The pytest plugin installed with excepthub (module `_excepthub_pytestplugin`) adds the
fixtures `excepthub_recording` and `excepthub_overrides`.
"""

from typing import TYPE_CHECKING, Any

from ._coverage import Coverage, coverage, exception_classes_of
from ._overrides import HandlerOverrides, overriding
from ._recording import Recording, recording
from ._reference import candidates, reference_resolve

if TYPE_CHECKING:
    from ._strategies import (
        exception_classes,
        exception_groups,
        exception_hierarchies,
        exceptions,
    )

_STRATEGIES = frozenset(
    {"exception_classes", "exception_groups", "exception_hierarchies", "exceptions"}
)

__all__ = [
    "Coverage",
    "HandlerOverrides",
    "Recording",
    "candidates",
    "coverage",
    "exception_classes",
    "exception_classes_of",
    "exception_groups",
    "exception_hierarchies",
    "exceptions",
    "overriding",
    "recording",
    "reference_resolve",
]


def __getattr__(name: str) -> Any:
    # the strategies import hypothesis: only when asked for, so the rest works without it
    if name in _STRATEGIES:
        try:
            from . import _strategies
        except ImportError as error:
            raise ImportError(
                f"excepthub.testing.{name} needs hypothesis: pip install 'excepthub[testing]'"
            ) from error
        return getattr(_strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
