"""The OpenAPI document, corrected so that it tells the truth about this server.

FastAPI's generated document is right about shapes but wrong in two ways a
client (or schemathesis) trips on:

* routes that send pre-encoded JSON (``JSONBytes``) get ``{"type": "string",
  "$ref": ...}`` for their 200 body: a string *and* an object.  A schema with a
  ``$ref`` keeps only the reference here (likewise the ``title`` and
  ``additionalProperties`` beside the model of a route that returns a ``dict``).
* the bearer scheme is declared on every route with a key-check dependency,
  reads included, even when ``api.read_requires_key`` is false and reads need
  no key.  Security is declared here from the same rule the server enforces
  (:func:`api.deps.required_digests` on the route's access level): required
  where a key is needed, optional (``{}`` or bearer) on the health probe when
  reads are locked (a key only adds details), absent elsewhere.

The document is built once per process on first request, like FastAPI's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.deps import Access, required_digests
from api.guard import route_rules
from odpm.config import ApiConfig

#: The security scheme name FastAPI gives :data:`api.auth.bearer_scheme`.
BEARER = "HTTPBearer"


def _only_refs(node: Any) -> None:
    """Drop the siblings FastAPI puts beside a ``$ref`` in place: ``type`` for
    ``JSONBytes`` routes, ``title`` and ``additionalProperties`` where a route returns a
    plain ``dict`` documented by a response model."""
    if isinstance(node, dict):
        if "$ref" in node:
            for key in [k for k in node if k != "$ref"]:
                del node[key]
        for value in node.values():
            _only_refs(value)
    elif isinstance(node, list):
        for value in node:
            _only_refs(value)


def security_for(access: Access, api: ApiConfig) -> list[dict[str, list[str]]] | None:
    """The ``security`` of an operation with ``access`` (None: no key involved)."""
    if access is Access.PROBE:
        return [{}, {BEARER: []}] if api.read_requires_key else None
    if required_digests(access, api) is None:
        return None
    return [{BEARER: []}]


def build_openapi(app: FastAPI, api: ApiConfig) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _only_refs(doc)
    for rule in route_rules(app.routes):
        ops = doc.get("paths", {}).get(rule.template, {})
        security = security_for(rule.access, api)
        for method in rule.methods:
            op = ops.get(method.lower())
            if op is None:
                continue
            op.pop("security", None)
            if security is not None:
                op["security"] = security
    return doc


def install_openapi(app: FastAPI, api: Callable[[], ApiConfig]) -> None:
    """Serve :func:`build_openapi` as the app's ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, api())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
