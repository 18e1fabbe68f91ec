"""Log set-up: one JSON object a line (or plain text on a terminal), with the ids of the
records a line is about. Nothing here ever formats a key or a secret: lines carry ids."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from tracker.tracing import current_trace_id

# The `extra=` fields that identify what a line is about.
CONTEXT_FIELDS = ("task_id", "subscription_id", "event_id", "state", "status_code", "polls")


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if hasattr(record, name)}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **{k: str(v) for k, v in _context(record).items()},
        }
        trace_id = current_trace_id()
        if trace_id is not None:  # the task's trace, to find the line's spans (tracing on)
            line["trace_id"] = trace_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        return f"{line} {context}" if context else line


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Send every log line of `level` or above to stderr as JSON, or as text (`auto`: text on
    a terminal)."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # `debug` is for the tracker's own lines: libraries stay at `info` (sse-starlette, for
    # one, logs every chunk it streams, a client's events, at debug).
    wanted = logging.getLevelName(level.upper())
    root.setLevel(max(wanted, logging.INFO))
    logging.getLogger("tracker").setLevel(wanted)
    # httpx logs each request with its full URL: callback URLs may carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
