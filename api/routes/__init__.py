"""One router per resource; :func:`api.app.create_app` mounts them under ``/api/v1``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Response
from fastapi.exceptions import RequestValidationError

from api.schemas import ErrorOut


class JSONBytes(Response):
    """Pre-encoded JSON (cached per reading), sent without re-validation."""

    media_type = "application/json"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    text = {
        400: "The body is not valid JSON.",
        401: "Missing or wrong API key.",
        403: "No API key is configured on the server.",
        404: "Unknown device, or nothing of that kind stored yet.",
        409: "Not possible in this service's mode (e.g. a replica without acquisition).",
        504: "The device did not answer in time.",
        503: "Storage (InfluxDB) unreachable.",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


def json_error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Like :func:`error_responses`, for routes whose success type is not JSON (SSE):
    errors are still JSON, and the documentation must say so."""
    ref = {"$ref": "#/components/schemas/ErrorOut"}
    return {
        c: {**entry, "content": {"application/json": {"schema": ref}}}
        for c, entry in error_responses(*codes).items()
    }


def invalid(where: str, name: str, message: str) -> RequestValidationError:
    """A 422 in FastAPI's own validation-error shape, naming the parameter.

    ``where`` is ``path``, ``query`` or ``body``; the message starts with the
    parameter's name so that a person reading only ``msg`` still knows.
    """
    return RequestValidationError(
        [{"loc": (where, name), "msg": f"{name}: {message}", "type": "value_error"}]
    )


def named_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors with each ``msg`` starting with the parameter it is about.

    FastAPI's own checks (bounds, types, patterns) say "Input should be greater
    than or equal to 1" without saying of what; this makes them read like the
    errors of :func:`invalid` ("ch: Input should be ...").
    """
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc") or ()]
        # ("body", "expected_channels", 0) -> "expected_channels.0"
        name = ".".join(loc[1:]) or (loc[0] if loc else "body")
        msg = str(err.get("msg", ""))
        if not msg.startswith(f"{name}:"):
            err = {**err, "msg": f"{name}: {msg}"}
        out.append(err)
    return out
