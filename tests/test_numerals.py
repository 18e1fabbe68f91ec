"""Whole numbers from outside (query parameters, Content-Length): ASCII digits only, and never
an error of ours however long."""

from __future__ import annotations

import pytest

from tracker.core.numerals import MOST_DIGITS, whole_number


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("7", 7), ("060", 60), ("9" * MOST_DIGITS, int("9" * MOST_DIGITS))],
)
def test_ascii_digits_are_a_whole_number(text: str, number: int) -> None:
    assert whole_number(text) == number


@pytest.mark.parametrize(
    "text",
    ["", " 1", "1 ", "+1", "-1", "1_000", "1.0", "1e2", "0x10", "²", "¹¹", "٣", "\uff11",
     "9" * (MOST_DIGITS + 1), "9" * 5000],
)  # fmt: skip
def test_anything_else_is_none_never_an_error(text: str) -> None:
    assert whole_number(text) is None
