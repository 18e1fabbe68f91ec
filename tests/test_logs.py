"""Log lines: JSON objects with the ids of what they are about, or text on a terminal."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from tracker.logs import JsonFormatter, TextFormatter, configure


def record(**extra: object) -> logging.LogRecord:
    line = logging.LogRecord("tracker.deliver", logging.INFO, __file__, 1, "attempt %d: %s",
                             (2, "delivered"), None)  # fmt: skip
    for name, value in extra.items():
        setattr(line, name, value)
    return line


def test_json_lines_carry_the_ids() -> None:
    line = json.loads(
        JsonFormatter().format(
            record(task_id="veo3:1-x", subscription_id="sub_1", event_id="msg_1", status_code=204)
        )
    )
    assert line["message"] == "attempt 2: delivered"
    assert line["level"] == "info"
    assert line["logger"] == "tracker.deliver"
    assert (line["task_id"], line["subscription_id"], line["event_id"]) == (
        "veo3:1-x",
        "sub_1",
        "msg_1",
    )
    assert line["status_code"] == "204"
    assert line["time"].endswith("+00:00")


def test_text_lines_end_with_the_ids() -> None:
    text = TextFormatter("%(levelname)s %(message)s").format(record(task_id="veo3:1-x"))
    assert text == "INFO attempt 2: delivered task_id=veo3:1-x"


def test_exceptions_stay_inside_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = record()
        line.exc_info = sys.exc_info()
    rendered = JsonFormatter().format(line)
    assert "\n" not in rendered
    assert "ValueError: boom" in json.loads(rendered)["exception"]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("tracker")
    saved = (root.handlers[:], root.level, ours.level)
    yield
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


@pytest.mark.usefixtures("restored_logging")
def test_debug_opens_the_trackers_own_lines_only() -> None:
    configure("json", "debug")
    assert logging.getLogger("tracker.deliver").isEnabledFor(logging.DEBUG)
    # A library that logs what it streams (a client's events) at debug stays at info.
    assert not logging.getLogger("sse_starlette.sse").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("sse_starlette.sse").isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("restored_logging")
def test_a_level_above_info_quiets_everything_below_it() -> None:
    configure("json", "WARNING")
    assert not logging.getLogger("tracker.deliver").isEnabledFor(logging.INFO)
    assert not logging.getLogger("aiohttp").isEnabledFor(logging.INFO)
    assert logging.getLogger("tracker.deliver").isEnabledFor(logging.WARNING)
