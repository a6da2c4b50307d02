"""Exception groups: taken apart like `except*`, leaf by leaf; put back together by `split`."""

from __future__ import annotations

from collections.abc import Collection, Iterator

__all__ = ["leaves", "only_leaf", "remainder"]


def leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """The leaves of a group tree, depth first, in order."""
    for child in group.exceptions:
        if isinstance(child, BaseExceptionGroup):
            yield from leaves(child)
        else:
            yield child


def only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf of a group of one leaf (however nested), else `None`."""
    found = None
    for leaf in leaves(group):
        if found is not None:
            return None
        found = leaf
    return found


def remainder(
    group: BaseExceptionGroup[BaseException], keep: Collection[int]
) -> BaseExceptionGroup[BaseException] | None:
    """The group reduced to the leaves whose `id` is in `keep`, same nesting (`split` keeps
    tracebacks, `__cause__`, `__context__` and notes)."""
    kept, _ = group.split(lambda e: not isinstance(e, BaseExceptionGroup) and id(e) in keep)
    return kept
