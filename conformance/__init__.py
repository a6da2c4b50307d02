"""The frameworks' own exception-related tests, run with excepthub's adapter injected.

`python -m conformance [NAME ...]` fetches each framework's source distribution at the version
in `uv.lock`, runs a chosen set of its tests unchanged and with the adapter injected (nothing
registered), and fails on any difference not listed in `differences.toml` with its reason.
One module per framework (`fastapi.py`, `fastmcp.py`, `faststream.py`) says what to run and how
to inject; `docs/compatibility.md` shows the results to users.
"""
