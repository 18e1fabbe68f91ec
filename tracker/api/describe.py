"""The parts the OpenAPI description of each route is made of (`PATHS` in each endpoint
module, gathered by `tracker.api.openapi`): references to the component schemas, the problem
answers, the shared parameters."""

from __future__ import annotations

from typing import Any

from tracker.core.records import VIDEO_EVENTS
from tracker.core.upstream import MAX_TASK_ID_LENGTH, TASK_ID_PATTERN
from tracker.core.upstream_keys import FINGERPRINT_PATTERN

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
JSON_OBJECT = {"type": "object", "additionalProperties": True}


def obj(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


def problems(*statuses: int) -> dict[str, Any]:
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
            "content": {"application/problem+json": {"schema": ref("Problem")}},
        }
        for status in statuses
    }


def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body of `schema`."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` refusing any property it does not name."""
    return {**schema, "additionalProperties": False}


FINGERPRINT = obj({"fingerprint": {"type": "string", "pattern": FINGERPRINT_PATTERN}})

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


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STRING}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name, "in": "query", "required": False, "schema": schema,
        "description": description,
    }  # fmt: skip


FEED_FILTERS = [
    query(
        "type",
        STRING,
        "only these event types (comma separated, or the parameter repeated)",
    ),
    query("task_id", STRING, "only this task's events"),
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

# The routes that need `Authorization: Bearer <api key>`.
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
