"""The HTTP API: register, list, read, cancel and redeliver tasks; health; metrics; OpenAPI.

Every `/v1` route authenticates a client by its bearer key and sees only that client's
subscriptions; an unknown task and another client's look the same.
"""

from tracker.api.app import create_app

__all__ = ["create_app"]
