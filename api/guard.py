"""The request guard: key first, then body size, before any route reads a body.

FastAPI reads and parses a request body before it runs a route's dependencies,
so a key check in a dependency comes after the whole body is in memory: ten
50 MB PUTs without a key cost 650 MB before each got its 401.  This pure ASGI
middleware runs before routing:

1. it finds the route the request will reach and that route's access level
   (:func:`route_access`, from the key-check dependency the route declares),
   and refuses a request without the key it needs (401/403) without reading
   anything of its body;
2. it refuses a declared ``Content-Length`` over ``api.max_body_bytes`` with
   413, and counts the bytes of a body sent without one (chunked), answering
   413 as soon as the count passes the limit.

It also answers 405 itself when the path exists with other methods, with an
``Allow`` header listing every method of that path: Starlette lists those of
the first route of the path only (GET and PUT ``/thresholds`` are two routes).

Early refusals carry ``Connection: close``: the body the client is still
sending is never read, and the connection it arrives on is closed.  Routes keep
their own key-check dependencies (the same :func:`api.auth.key_refusal`), so a
request that reaches a route is checked twice, once here and once there.

FastAPI's own ``max_body_size`` is not used: it runs outside (before) user
middleware, so an oversized body without a key would get 413 rather than 401,
telling an anonymous client what the server would accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, compile_path

from api.auth import bearer_key, key_refusal
from api.deps import ACCESS_OF, Access, required_digests
from odpm.config import ApiConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes under this prefix are never open: without a declared level they are reads.
API_ROOT = "/api/"


def route_access(route: BaseRoute) -> Access:
    """A route's access level: the key-check dependency it (or a dependency) declares.

    Routes that declare none (the schema, the documentation pages, static files)
    are open.  Computed once per route by :func:`route_rules`.
    """
    access = Access.OPEN
    if isinstance(route, APIRoute):
        stack = [route.dependant]
        while stack:
            dep = stack.pop()
            found = ACCESS_OF.get(dep.call) if dep.call is not None else None
            if found is not None:
                access = found
                break
            stack.extend(dep.dependencies)
    return access


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One API route as the guard sees it: full path template, methods, access level."""

    template: str
    regex: re.Pattern[str]
    methods: frozenset[str]
    access: Access
    route: BaseRoute


def route_rules(routes: Sequence[BaseRoute]) -> list[RouteRule]:
    """Every API route of ``routes`` (included routers flattened, prefixes applied)."""
    rules = []
    for ctx in iter_route_contexts(routes):
        original = ctx.original_route
        template = ctx.path_format
        if not isinstance(original, APIRoute) or not template:
            continue  # the schema, the documentation pages, static files: open
        regex, _, _ = compile_path(template)
        methods = frozenset(ctx.methods or ())
        access = route_access(original)
        if access is Access.OPEN and template.startswith(API_ROOT):
            access = Access.READ  # an API route that forgot its key check is a read
        rules.append(RouteRule(template, regex, methods, access, original))
    return rules


def match_rule(rules: Sequence[RouteRule], scope: Scope) -> RouteRule | None:
    """The API route ``scope`` (path and method) will reach, if any."""
    path = scope["path"]
    method = scope["method"]
    for rule in rules:
        if method in rule.methods and rule.regex.match(path):
            return rule
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def _refuse(
    send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def too_large_detail(limit: int) -> str:
    return f"request body larger than {limit} bytes (api.max_body_bytes)"


class RequestGuard:
    """Pure ASGI middleware: the key (when the route needs one), then the body size."""

    def __init__(
        self, app: ASGIApp, routes: Sequence[BaseRoute], api: Callable[[], ApiConfig]
    ) -> None:
        self.app = app
        self.routes = routes
        self.api = api
        self._rules: list[RouteRule] | None = None

    def rules(self) -> list[RouteRule]:
        """The route table, built on the first request (every route is added by then)."""
        if self._rules is None:
            self._rules = route_rules(self.routes)
        return self._rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = self.api()
        rule = match_rule(self.rules(), scope)
        if rule is None:
            same_path = [r for r in self.rules() if r.regex.match(scope["path"])]
            if same_path:
                # Starlette's 405 lists the methods of the first route of that path
                # only; a path served by two routers (GET and PUT /thresholds) must
                # list both, as the schema does.
                allow = ", ".join(sorted({m for r in same_path for m in r.methods}))
                scope["route"] = same_path[0].route
                await _refuse(send, 405, "Method Not Allowed", {"Allow": allow})
                return
        else:
            digests = required_digests(rule.access, api)
            if digests is not None:
                refusal = key_refusal(bearer_key(_header(scope, b"authorization")), digests)
                if refusal is not None:
                    scope["route"] = rule.route  # for the latency metric's route label
                    await _refuse(send, refusal.status_code, refusal.detail, refusal.headers)
                    return
        limit = api.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            if rule is not None:
                scope["route"] = rule.route
            await _refuse(send, 413, too_large_detail(limit))
            return
        body = _BodyLimit(receive, send, limit)
        await self.app(scope, body.receive, body.send)


class _BodyLimit:
    """Counts body bytes as the app receives them; past the limit it answers 413
    itself (unless the app has started its answer), tells the app the client left,
    and drops what the app sends afterwards."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._seen = 0
        self._refused = False
        self._started = False

    async def receive(self) -> Message:
        if self._refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self._refused = True
                if not self._started:
                    self._started = True
                    await _refuse(self._send, 413, too_large_detail(self._limit))
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self._refused:
            return
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)
