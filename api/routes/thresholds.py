"""Alarm thresholds: read them (``effective`` beside ``overrides``), replace them (PUT),
merge into them (PATCH, JSON Merge Patch).

The three ways a channel's threshold can stand, and how each is written:

* inherited: the field is absent from the channel's overrides (the global value applies);
* overridden: a number;
* switched off: ``null``.

PUT takes the whole set (a field left out takes its built-in default, exactly as in a
config file's ``[alarms]``; a channel's field left out inherits).  PATCH applies the
body to the current set as a JSON Merge Patch (RFC 7396): members present replace,
objects merge recursively (so ``{"channels": {"14": {"osnr_low_db": 12}}}`` changes
channel 14's OSNR threshold and keeps its other overrides and every other channel's),
``{"channels": {"14": null}}`` removes channel 14's overrides (it inherits again) and
arrays (``expected_channels``) are replaced whole.  One documented difference from RFC
7396: ``null`` on a threshold sets it to null (switched off) instead of deleting it,
which is what the README has always promised and the only way RFC 7396 leaves to say
"off" (a global threshold has no "absent" state at all).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ValidationError

from api.deps import ReadAccess, ServiceDep, WriteAccess
from api.routes import error_responses, invalid
from api.schemas import ThresholdsIn, ThresholdsOut
from odpm.config import AlarmConfig
from odpm.service import NotAvailableError, ThresholdError

router = APIRouter(tags=["alarms"])

#: Media types PATCH accepts: RFC 7396's own, and plain JSON (what curl users send).
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/json")


def merge_patch_schema() -> dict[str, Any]:
    """The PATCH body's schema: :class:`ThresholdsIn` as a merge patch (no member
    required; ``null`` also where it removes: a channel entry, the whole channel map,
    ``expected_channels``), so the document says what the route accepts."""
    schema = ThresholdsIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    schema.pop("required", None)
    schema["title"] = "ThresholdsPatch"
    props = schema["properties"]
    channels = props["channels"]
    channels["additionalProperties"] = {
        "anyOf": [channels["additionalProperties"], {"type": "null"}]
    }
    props["channels"] = {"anyOf": [channels, {"type": "null"}], "title": "Channels"}
    props["expected_channels"] = {
        "anyOf": [props["expected_channels"], {"type": "null"}],
        "title": "Expected Channels",
    }
    return schema


@router.get(
    "/thresholds",
    response_model=ThresholdsOut,
    dependencies=[ReadAccess],
    responses=error_responses(401, 403),
)
async def get_thresholds(service: ServiceDep) -> ThresholdsOut:
    """The thresholds in force; per overridden channel what it sets and what applies."""
    return ThresholdsOut.from_config(service.alarm_config)


@router.put(
    "/thresholds",
    response_model=ThresholdsOut,
    dependencies=[WriteAccess],
    responses=error_responses(400, 401, 403, 409),
)
def put_thresholds(service: ServiceDep, body: ThresholdsIn) -> ThresholdsOut:
    """Replace every threshold (fields left out take their defaults, channel fields left
    out inherit, null switches off); applies to every device from its next scan."""
    return _apply(service, body.model_dump(exclude_unset=True))


@router.patch(
    "/thresholds",
    response_model=ThresholdsOut,
    dependencies=[WriteAccess],
    responses={
        **error_responses(400, 401, 403, 409),
        415: {"description": "The body is not application/merge-patch+json or JSON."},
        422: {
            "description": "The merged thresholds are invalid (the message names the field).",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": merge_patch_schema()} for t in MERGE_PATCH_TYPES},
        }
    },
)
async def patch_thresholds(service: ServiceDep, request: Request) -> ThresholdsOut:
    """Merge the body into the current thresholds (JSON Merge Patch, RFC 7396; ``null``
    on a threshold switches it off, on a channel entry removes its overrides)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in MERGE_PATCH_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"PATCH /thresholds takes {' or '.join(MERGE_PATCH_TYPES)}, "
            f"not {media or 'a body without Content-Type'}",
        )
    try:
        patch = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"body: not JSON ({exc})") from None
    if not isinstance(patch, dict):
        raise invalid("body", "body", "a merge patch of the thresholds must be a JSON object")
    if "overrides" in patch:
        patch["channels"] = patch.pop("overrides")
    merged = merge_patch(current_document(service.alarm_config), patch)
    try:
        body = ThresholdsIn.model_validate(merged)
    except ValidationError as exc:
        raise _refused(exc) from None
    return _apply(service, body.model_dump(exclude_unset=True))


def current_document(alarms: AlarmConfig) -> dict[str, Any]:
    """The thresholds in the form PUT takes: channel overrides hold only what is set."""
    doc = alarms.model_dump(exclude={"channels"})
    doc["channels"] = {
        str(ch): ov.model_dump(exclude_unset=True) for ch, ov in alarms.channels.items()
    }
    return doc


def merge_patch(target: dict[str, Any], patch: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """RFC 7396 MergePatch on the thresholds document (see the module docstring for
    the one difference: ``null`` on a threshold is kept, meaning "off").

    ``depth`` 0 is the document, 1 the ``channels`` map, 2 a channel's overrides.
    """
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            if depth == 1:
                out.pop(key, None)  # a channel entry: its overrides go, it inherits
            elif key == "channels":
                out[key] = {}
            elif key == "expected_channels":
                out[key] = []
            else:
                out[key] = None  # a threshold: switched off
        elif isinstance(value, dict) and (key == "channels" or depth == 1):
            current = out.get(key)
            out[key] = merge_patch(current if isinstance(current, dict) else {}, value, depth + 1)
        else:
            out[key] = value
    return out


def _refused(exc: ValidationError) -> Exception:
    """A 422 naming the first bad field (a model-level error names it in its message)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p != "[key]")
    msg = (
        str(err.get("ctx", {}).get("error", err["msg"]))
        if err["type"] == "value_error"
        else err["msg"]
    )
    name = loc or msg.split(" ", 1)[0]
    if msg.startswith(name + " "):
        msg = msg[len(name) + 1 :]
    return invalid("body", name, msg)


def _apply(service: ServiceDep, fields: dict[str, Any]) -> ThresholdsOut:
    """Validate a complete threshold set and install it on every device."""
    try:
        alarms = AlarmConfig.model_validate(fields)
    except ValidationError as exc:
        raise _refused(exc) from None
    try:
        service.set_thresholds(alarms)
    except ThresholdError as exc:
        raise invalid("body", exc.parameter, exc.message) from None
    except NotAvailableError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return ThresholdsOut.from_config(alarms)
