"""What the dashboard's search finds: a task whose id, or any value in the caller's own
subscription metadata, contains the text, ignoring case. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
