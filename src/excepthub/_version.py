"""The one version of all four distributions: excepthub and its three adapters."""

__version__ = "0.1.0"
