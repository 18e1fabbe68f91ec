"""The dashboard's times: relative, the exact time kept on hover."""

from __future__ import annotations

import pytest

from tracker.ui.times import relative, when


@pytest.mark.parametrize(
    ("gap", "said"),
    [
        (0.2, "just now"), (40, "40 s ago"), (59.9, "59 s ago"), (61, "1 min ago"),
        (3599, "59 min ago"), (7200, "2 h ago"), (86400, "1 day ago"), (5 * 86400, "5 days ago"),
        (-300, "in 5 min"), (-7 * 86400, "in 7 days"),
    ],
)  # fmt: skip
def test_relative_times(gap: float, said: str) -> None:
    assert relative(1_000_000.0 - gap, 1_000_000.0) == said


def test_a_time_element_keeps_the_exact_time() -> None:
    shown = str(when(1_770_350_330.5, 1_770_350_400.0))
    assert shown == (
        '<time datetime="2026-02-06T03:58:50.500Z" title="2026-02-06T03:58:50.500Z">'
        "1 min ago</time>"
    )
    assert str(when("2026-02-06T03:58:50.500Z", 1_770_350_400.0)).endswith(">1 min ago</time>")
    assert str(when(None, 0.0)) == ""
