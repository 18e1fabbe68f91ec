"""Log set-up: one line per event, with the ids of the records it is about."""

from __future__ import annotations

import logging

# The `extra=` fields that identify what a line is about; printed as key=value.
CONTEXT_FIELDS = ("task_id", "subscription_id", "event_id", "state", "status_code", "polls")


class ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name)
        )
        return f"{line} {context}" if context else line


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs each request with its full URL: callback URLs may carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
