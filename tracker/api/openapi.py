"""The OpenAPI 3.1 document of the API, served at `GET /openapi.json`."""

from __future__ import annotations

import json
from typing import Any

from tracker import __version__
from tracker.api.answers import component_schemas
from tracker.core.records import (
    VIDEO_EVENTS,
    DeliveryState,
    TaskState,
)
from tracker.core.upstream import MAX_TASK_ID_LENGTH, TASK_ID_PATTERN
from tracker.core.upstream_keys import FINGERPRINT_PATTERN

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
JSON_OBJECT = {"type": "object", "additionalProperties": True}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


def _problems(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "The body is not JSON (`invalid_request`).",
        401: "No valid API key (`unauthorized`).",
        404: "No such task (or key) for this client (`not_found`).",
        409: "The task has not ended (`task_not_final`), or the Idempotency-Key is in use by a "
        "request still running (see Retry-After) or its request's outcome is unknown "
        "(`idempotency_conflict`).",
        502: "QuickRouter could not be reached or gave no usable answer (`upstream_unavailable`).",
        413: "The body is larger than 64 KiB (`payload_too_large`).",
        422: "A field is missing or refused (`validation_failed`).",
        429: "Too many registrations, redeliveries, or open streams and waits; see Retry-After "
        "(`rate_limited`).",
        503: "Redis is unreachable (`unavailable`), or lost the tracker's data (`data_lost`); "
        "nothing was stored.",
    }
    return {
        str(status): {
            "description": reasons[status],
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
        for status in statuses
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


FINGERPRINT = _object({"fingerprint": {"type": "string", "pattern": FINGERPRINT_PATTERN}})

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
    "description": "The same key and body within 24 h answer the first answer again.",
}

VIDEO_CREATION = {
    "type": "object",
    "description": "QuickRouter's create body (passed on as it is: any other field the model "
    "takes goes too) plus the tracker's `callback_url`, `metadata`, `events`, `upstream_key`.",
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 200},
        "prompt": {"type": "string", "minLength": 1},
        "images": {"type": "array", "items": STRING},
        "aspect_ratio": STRING,
        "enhance_prompt": {"type": "boolean"},
        "enable_upsample": {"type": "boolean"},
        "callback_url": {"type": "string", "minLength": 1, "maxLength": 2048},
        "metadata": JSON_OBJECT,
        "events": {"type": "array", "items": {"enum": [e.value for e in VIDEO_EVENTS]}},
        "upstream_key": {"type": "string", "pattern": FINGERPRINT_PATTERN},
    },
    "required": ["model", "prompt"],
    "additionalProperties": True,
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STRING}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name, "in": "query", "required": False, "schema": schema,
        "description": description,
    }  # fmt: skip


FEED_FILTERS = [
    _query(
        "type",
        STRING,
        "only these event types (comma separated, or the parameter repeated)",
    ),
    _query("task_id", STRING, "only this task's events"),
]
# A cursor, or empty for none.
CURSOR_SCHEMA = {"type": "string", "pattern": "^([0-9]{1,19}-[0-9]{1,19})?$"}

TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {
        "type": "string",
        "pattern": TASK_ID_PATTERN,
        "minLength": 1,
        "maxLength": MAX_TASK_ID_LENGTH,
    },
    "description": "QuickRouter's task id, model prefix included.",
}


def document(
    registration_schema: dict[str, Any],
    storage_schema: dict[str, Any],
    recovery_schema: dict[str, Any],
    operational_schema: dict[str, Any],
) -> dict[str, Any]:
    """The whole document; the schemas are pydantic's, of the request bodies of
    `POST /v1/tasks`, `PUT /v1/storage`, `POST /v1/destinations/recover` and
    `PUT /v1/operational-webhook`."""
    # pydantic puts nested models under `$defs`; OpenAPI wants them under components.
    defs = {}
    bodies = []
    for schema in (registration_schema, operational_schema):
        defs.update(schema.pop("$defs", {}))
        bodies.append(json.loads(json.dumps(schema).replace("#/$defs/", REF)))
    schemas = {
        **component_schemas(), **defs, "TaskRegistration": bodies[0],
        "StorageSettings": storage_schema, "Recovery": recovery_schema,
        "OperationalWebhookSettings": bodies[1],
    }  # fmt: skip
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "quickrouter-tracker",
            "version": __version__,
            "description": "Register QuickRouter video tasks; receive signed webhooks.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/tasks": {
                "post": {
                    "summary": "Track a task and subscribe a callback to it",
                    "security": secured,
                    "parameters": [IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TaskRegistration")}},
                    },
                    "responses": {
                        "201": _json("A new subscription.", _ref("Subscription")),
                        "200": _json(
                            "The same subscription, registered before.", _ref("Subscription")
                        ),
                        **_problems(400, 401, 409, 413, 422, 429, 503),
                    },
                },
                "get": {
                    "summary": "The caller's tasks, newest first",
                    "description": "A page looks at 1,000 tasks at most: with a `state` few "
                    "tasks are in, it may be short or empty; the list ends where `next_cursor` "
                    "is null.",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": [s.value for s in TaskState]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "schema": STRING,
                            "description": "`next_cursor` of the page before.",
                        },
                    ],
                    "responses": {
                        "200": _json("One page of tasks.", _ref("TaskList")),
                        **_problems(401, 422, 503),
                    },
                },
            },
            "/v1/tasks/{task_id}": {
                "parameters": [TASK_ID],
                "get": {
                    "summary": "A task, with the caller's subscriptions and deliveries",
                    "security": secured,
                    "parameters": [
                        _query(
                            "wait",
                            {"type": "integer", "minimum": 0, "maximum": 60},
                            "a long poll: answer as soon as the task ends, or after this "
                            "many seconds with its state then",
                        )
                    ],
                    "responses": {
                        "200": _json("The task.", _ref("Task")),
                        **_problems(401, 404, 422, 429, 503),
                    },
                },
                "delete": {
                    "summary": "Stop tracking the task for the caller",
                    "security": secured,
                    "responses": {
                        "204": {"description": "Cancelled."},
                        **_problems(401, 404, 503),
                    },
                },
            },
            "/v1/tasks/{task_id}/redeliver": {
                "parameters": [TASK_ID],
                "post": {
                    "summary": "Send an ended task's final event again (same webhook-id)",
                    "security": secured,
                    "responses": {
                        "202": _json(
                            "The deliveries due again at once; `was`: what each was doing "
                            "(pending: in backoff or in flight; delivered, dead, gone, skipped)",
                            _object(
                                {
                                    "deliveries": {"type": "array", "items": STRING},
                                    "was": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "enum": [s.value for s in DeliveryState]
                                        },
                                    },
                                }
                            ),
                        ),
                        **_problems(401, 404, 409, 503),
                    },
                },
            },
            "/v1/videos": {
                "post": {
                    "summary": "Create a video at QuickRouter and track it, in one call",
                    "security": secured,
                    "parameters": [IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": VIDEO_CREATION}},
                    },
                    "responses": {
                        "201": _json(
                            "Created upstream and registered.",
                            _object({"task_id": STRING, "subscription": _ref("Subscription")}),
                        ),
                        "4XX": {
                            "description": "QuickRouter refused the create: its status and "
                            "message (`upstream_refused`); or one of the tracker's own refusals.",
                            "content": {"application/problem+json": {"schema": _ref("Problem")}},
                        },
                        **_problems(409, 502, 503),
                    },
                },
            },
            "/v1/events": {
                "get": {
                    "summary": "The caller's event feed, oldest first",
                    "security": secured,
                    "parameters": [
                        _query("after", CURSOR_SCHEMA, "the cursor to start after"),
                        _query(
                            "limit", {"type": "integer", "minimum": 1, "maximum": 100}, "events"
                        ),
                        *FEED_FILTERS,
                    ],
                    "responses": {
                        "200": _json("One page of events.", _ref("FeedPage")),
                        **_problems(401, 422, 503),
                    },
                },
            },
            "/v1/events/stream": {
                "get": {
                    "summary": "The caller's events as they are made (Server-Sent Events)",
                    "security": secured,
                    "parameters": [
                        _query("after", CURSOR_SCHEMA, "start after this cursor (default: now)"),
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": CURSOR_SCHEMA,
                            "description": "resume after this cursor (wins over `after`)",
                        },
                        *FEED_FILTERS,
                    ],
                    "responses": {
                        "200": {
                            "description": "A `ready` event (its `id`: the cursor the stream "
                            "starts after), then one SSE event per feed event: `id` its cursor, "
                            "`event` its type, `data` the FeedEvent as JSON; a comment as a "
                            "heartbeat every TRACKER_STREAM_HEARTBEAT seconds.",
                            "content": {"text/event-stream": {"schema": STRING}},
                        },
                        **_problems(401, 422, 429, 503),
                    },
                },
            },
            "/v1/upstream-keys": {
                "post": {
                    "summary": "Keep one of the caller's own QuickRouter keys (sealed at rest)",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    **_object({"key": {**STRING, "minLength": 1}}),
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json("Kept; only its fingerprint is ever shown.", FINGERPRINT),
                        **_problems(400, 401, 413, 422, 503),
                    },
                },
                "get": {
                    "summary": "The fingerprints of the caller's own QuickRouter keys",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            "Fingerprints only.",
                            _object({"keys": {"type": "array", "items": FINGERPRINT}}),
                        ),
                        **_problems(401, 503),
                    },
                },
            },
            "/v1/upstream-keys/{fingerprint}": {
                "parameters": [_path_param("fingerprint")],
                "delete": {
                    "summary": "Forget one of the caller's keys (its tasks' polls then fail)",
                    "security": secured,
                    "responses": {
                        "204": {"description": "Forgotten."},
                        **_problems(401, 404, 503),
                    },
                },
            },
            "/v1/deliveries/{delivery_id}": {
                "parameters": [_path_param("delivery_id")],
                "get": {
                    "summary": "One of the caller's deliveries, with every attempt as it went",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            "The delivery.",
                            {
                                "allOf": [
                                    _ref("Delivery"),
                                    _object(
                                        {
                                            "task_id": STRING,
                                            "subscription_id": STRING,
                                            "callback_url": STRING,
                                        }
                                    ),
                                ]
                            },
                        ),
                        **_problems(401, 404, 503),
                    },
                },
            },
            "/v1/deliveries/{delivery_id}/resend": {
                "parameters": [_path_param("delivery_id")],
                "post": {
                    "summary": "Send one of the caller's deliveries again (a new round)",
                    "security": secured,
                    "responses": {
                        "202": _json(
                            "Due at once.",
                            _object(
                                {
                                    "delivery": STRING,
                                    "was": {"enum": [s.value for s in DeliveryState]},
                                }
                            ),
                        ),
                        **_problems(401, 404, 429, 503),
                    },
                },
            },
            "/v1/destinations/recover": {
                "post": {
                    "summary": "Send again every failed delivery to one of the caller's "
                    "origins made within a time window",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Recovery")}},
                    },
                    "responses": {
                        "200": _json(
                            "A dry run: how many there are.",
                            _object({"found": {"type": "integer"}, "more": {"type": "boolean"}}),
                        ),
                        "202": _json(
                            "Sent again (1,000 at most a call).",
                            _object(
                                {
                                    "recovery": STRING,
                                    "found": {"type": "integer"},
                                    "more": {"type": "boolean"},
                                    "deliveries": {"type": "array", "items": STRING},
                                }
                            ),
                        ),
                        **_problems(400, 401, 413, 422, 429, 503),
                    },
                },
            },
            "/v1/destinations/enable": {
                "post": {
                    "summary": "A disabled (or open) destination takes attempts again; what "
                    "waits for it is due at once",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    **_object({"origin": {**STRING, "minLength": 1}}),
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "Enabled.",
                            _object(
                                {
                                    "origin": STRING,
                                    "requeued": {"type": "integer"},
                                    "more": {"type": "boolean"},
                                }
                            ),
                        ),
                        **_problems(400, 401, 413, 422, 503),
                    },
                },
            },
            "/v1/recoveries/{recovery_id}": {
                "parameters": [_path_param("recovery_id")],
                "get": {
                    "summary": "How a recovery's deliveries stand now, by state",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            "Counts by state.",
                            _object(
                                {
                                    "recovery": STRING,
                                    "deliveries": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                    },
                                }
                            ),
                        ),
                        **_problems(401, 404, 503),
                    },
                },
            },
            "/v1/destinations": {
                "get": {
                    "summary": "The caller's callback origins: each one's state, and how its "
                    "attempts went over the last hour and day",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            "Its destinations, the most recently attempted first.",
                            _object(
                                {"destinations": {"type": "array", "items": _ref("Destination")}}
                            ),
                        ),
                        **_problems(401, 503),
                    },
                },
            },
            "/v1/storage": {
                "get": {
                    "summary": "The caller's own object storage, masked",
                    "security": secured,
                    "responses": {
                        "200": _json("Its storage.", _ref("ClientStorage")),
                        **_problems(401, 503),
                    },
                },
                "put": {
                    "summary": "Send the caller's copies of its videos to its own S3 bucket",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("StorageSettings")}},
                    },
                    "responses": {
                        "200": _json(
                            "Kept (the secret sealed, never shown).", _ref("ClientStorage")
                        ),
                        **_problems(400, 401, 413, 422, 503),
                    },
                },
                "delete": {
                    "summary": "Forget the caller's own storage",
                    "security": secured,
                    "responses": {
                        "204": {"description": "Forgotten."},
                        **_problems(401, 404, 503),
                    },
                },
            },
            "/v1/operational-webhook": {
                "get": {
                    "summary": "Where the caller's operational events go as webhooks",
                    "security": secured,
                    "responses": {
                        "200": _json("Its operational webhook.", _ref("OperationalWebhook")),
                        **_problems(401, 404, 503),
                    },
                },
                "put": {
                    "summary": "Send delivery.exhausted and destination.disabled to a callback",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("OperationalWebhookSettings")}
                        },
                    },
                    "responses": {
                        "200": _json("Set (replacing any before).", _ref("OperationalWebhook")),
                        **_problems(400, 401, 413, 422, 503),
                    },
                },
                "delete": {
                    "summary": "Stop sending the caller's operational events as webhooks",
                    "security": secured,
                    "responses": {
                        "204": {"description": "Stopped."},
                        **_problems(401, 404, 503),
                    },
                },
            },
            "/v1/files/{key}": {
                "parameters": [
                    _path_param("key"),
                    _query("expires", STRING, "Unix seconds until which the link works"),
                    _query("signature", STRING, "the tracker's signature of the link"),
                ],
                "get": {
                    "summary": "A copy kept in the deployment's storage folder, by signed link",
                    "responses": {
                        "200": {
                            "description": "The file.",
                            "content": {"application/octet-stream": {"schema": STRING}},
                        },
                        **_problems(401, 404),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": _json("Serving.", _object({"status": STRING}))},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: Redis answers",
                    "responses": {
                        "200": _json("Ready.", _object({"status": STRING})),
                        **_problems(503),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json("The OpenAPI document.", JSON_OBJECT)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: this process's, and the fleet's gauges",
                    "description": "With TRACKER_METRICS_TOKEN set, only for a bearer of it.",
                    "responses": {
                        "200": {
                            "description": "The Prometheus text format.",
                            "content": {"text/plain": {"schema": STRING}},
                        },
                        **_problems(401),
                    },
                }
            },
        },
    }
