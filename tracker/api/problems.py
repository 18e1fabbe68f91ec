"""Errors as RFC 9457 problem documents, for every error the API answers."""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.errors import MethodNotAllowed, NotFound, TrackerError, Unavailable, ValidationFailed

PROBLEM_TYPE = "urn:qrtracker:problem:"

M = TypeVar("M", bound=BaseModel)


def problem(error: TrackerError) -> JSONResponse:
    """An RFC 9457 problem document for `error`."""
    body = {
        "type": PROBLEM_TYPE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        **error.extensions,
    }
    return JSONResponse(
        body,
        status_code=error.status,
        media_type="application/problem+json",
        headers=error.headers,
    )


def validated(model: type[M], data: Any) -> M:
    """`data` (a request's JSON body) as `model`; else one 422 problem listing each field."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise_validation(exc)


def raise_validation(exc: PydanticValidationError) -> NoReturn:
    """Turn pydantic's errors into one 422 problem listing each field."""
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    raise ValidationFailed(summary, errors=errors) from None


async def on_tracker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TrackerError)
    return problem(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405, as problems like every other error."""
    assert isinstance(exc, HTTPException)
    error = NotFound(exc.detail) if exc.status_code == 404 else MethodNotAllowed(exc.detail)
    error.headers.update(exc.headers or {})  # 405 carries `Allow`
    return problem(error)


async def on_redis_error(request: Request, exc: Exception) -> Response:
    return problem(Unavailable("Redis is unreachable; nothing was stored, try again"))
