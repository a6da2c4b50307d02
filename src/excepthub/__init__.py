"""excepthub: write exception handlers once, use them in every service.

One registry, `ExceptionMiddleware`, holds side-effect `handlers` and fallback
`publish_handlers`; adapters plug it into FastAPI, FastStream and FastMCP.
"""

from fast_depends import Depends

from ._candidates import Decline
from ._defaults import Defaults, ExceptionKey
from ._handlers import Context
from ._observe import ErrorHook
from ._outcome import (
    DroppedValueWarning,
    ErrorEvent,
    ExcepthubWarning,
    Outcome,
    OutcomeKind,
    Resolution,
    ShadowedHandlerWarning,
    reraise,
)
from ._registry import ExceptionMiddleware
from ._retry import RedeliveryUnsupported, Retry
from ._version import __version__

__all__ = [
    "Context",
    "Decline",
    "Defaults",
    "Depends",
    "DroppedValueWarning",
    "ErrorEvent",
    "ExcepthubWarning",
    "ErrorHook",
    "ExceptionKey",
    "ExceptionMiddleware",
    "Outcome",
    "OutcomeKind",
    "RedeliveryUnsupported",
    "Resolution",
    "Retry",
    "ShadowedHandlerWarning",
    "reraise",
    "__version__",
]
