"""The OpenAPI 3.1 document of the API, served at `GET /openapi.json`: the component schemas
from the pydantic models (`tracker.api.answers` for what it answers, `tracker.api.schemas`
for what it takes), each route as its endpoint module describes it (`PATHS`)."""

from __future__ import annotations

import json
from typing import Any

from tracker import __version__
from tracker.api import (
    deliveries,
    destinations,
    events,
    operations,
    service,
    storage,
    tasks,
    upstream_keys,
    videos,
)
from tracker.api.answers import component_schemas
from tracker.api.describe import REF


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
            **tasks.PATHS,
            **videos.PATHS,
            **events.PATHS,
            **upstream_keys.PATHS,
            **deliveries.PATHS,
            **destinations.PATHS,
            **storage.PATHS,
            **operations.PATHS,
            **service.PATHS,
        },
    }
