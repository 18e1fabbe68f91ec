"""Whole numbers written by someone else: a query parameter, a Content-Length header.

`str.isdigit` is not the test: it is true of "²" and "٣", which `int` refuses or reads as
3, and `int` raises on a run of digits past Python's limit (4,300), so a hostile
`?limit=999…` would be an error of ours, not a 422."""

from __future__ import annotations

# Past this many digits a number is too large for anything the tracker counts.
MOST_DIGITS = 18


def whole_number(text: str) -> int | None:
    """`text` as a whole number if it is 1 to 18 ASCII digits and nothing else; else None."""
    if 0 < len(text) <= MOST_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None
