"""Settings recorded with an output (shards, reactions, videos, a run) and what a rerun changes in them.

Every command that continues an output folder compares the settings it would write with the recorded ones and
refuses to mix outputs made otherwise; this is the one comparison they share.
"""
from __future__ import annotations

from typing import Iterable, Mapping

ARROW = "{key}: {old!r} -> {new!r}"


def changes(recorded: Mapping, now: Mapping, keys: Iterable[str] | None = None) -> dict[str, tuple]:
    """{key: (recorded value, value now)} for every key that differs; `keys`: those to compare (default: the keys
    of both, so one that appears or disappears counts as a change)."""
    keys = sorted(set(recorded) | set(now)) if keys is None else list(keys)
    return {k: (recorded.get(k), now.get(k)) for k in keys if recorded.get(k) != now.get(k)}


def describe(diff: Mapping[str, tuple], fmt: str = ARROW, sep: str = ", ") -> str:
    """The changes as text, one `fmt` per key (fields: key, old, new)."""
    return sep.join(fmt.format(key=k, old=old, new=new) for k, (old, new) in diff.items())
