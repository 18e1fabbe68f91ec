"""What the dashboard's search finds: a task whose id, or any value in the caller's own
subscription metadata, contains the text, ignoring case. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

# What JSON may write other than as itself: text holding one of these (or any character past
# ASCII, which an older record may hold as a \u escape) may be escaped in a stored document,
# so each document is parsed before it is passed over.
ESCAPED = frozenset('"\\/')


def contains(value: Any, needle: str) -> bool:
    """Whether any scalar inside `value` (walked without recursion), as text, contains
    `needle` (already lower-cased)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None and needle in str(item).lower():
            return True
    return False


def task_matches(task_id: str, metadata: Iterable[dict[str, Any]], text: str) -> bool:
    """Whether a task is found by `text`: in its id, or in one of `metadata`."""
    needle = text.lower()
    return needle in task_id.lower() or any(contains(m, needle) for m in metadata)


def prefilter(text: str) -> str:
    """What a stored document's text must contain, lower-cased, to hold `text` in one of its
    values or in a task id; empty when that cannot be told from the text (then each document
    is parsed)."""
    needle = text.lower()
    plain = needle.isascii() and not any(c in ESCAPED or ord(c) < 0x20 for c in needle)
    return needle if plain else ""


def metadata_of(documents: Iterable[str], text: str) -> list[dict[str, Any]]:
    """The metadata documents (stored JSON) that might hold `text`, parsed. One whose JSON
    text does not contain it, ignoring case, holds no value that does, and is passed over
    unparsed (most are, in a search that finds few)."""
    needle = prefilter(text)
    return [json.loads(d) for d in documents if needle in d.lower()]
