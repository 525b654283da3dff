"""Dependency aliases for routes: the service, a device by id, and the key checks.

A route's access level is the key-check dependency it declares (:data:`ACCESS_OF`);
:mod:`api.guard` reads it to refuse a request before its body is read, and
:mod:`api.openapi` to declare bearer security only where a key is needed.

They are ``async def`` on purpose: none of them blocks, and FastAPI runs a plain
``def`` dependency in its thread pool, a thread hop per dependency per request
(measured: three of them cut a cached ``/latest`` from ~2,000 to ~750 req/s).
"""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import bearer_scheme, key_refusal, require_key
from odpm.config import ApiConfig
from odpm.service import DeviceRuntime, Service


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_device(device_id: str, service: ServiceDep) -> DeviceRuntime:
    dev = service.devices.get(device_id)
    if dev is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown device {device_id!r}")
    return dev


DeviceDep = Annotated[DeviceRuntime, Depends(get_device)]

Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


class Access(enum.Enum):
    """Who may call a route; :func:`required_digests` says which keys that means."""

    OPEN = "open"  #: anyone (the schema, the documentation pages)
    PROBE = "probe"  #: anyone; the details only with a read key (the health probe)
    READ = "read"  #: a key when ``api.read_requires_key`` is set
    METRICS = "metrics"  #: like READ, and a ``api.metrics_key_sha256`` key works too
    WRITE = "write"  #: always a key


def required_digests(access: Access, api: ApiConfig) -> list[str] | None:
    """The key digests a request with ``access`` must match; None when it needs no key."""
    if access is Access.WRITE:
        return api.api_key_sha256
    if access is Access.READ and api.read_requires_key:
        return api.api_key_sha256
    if access is Access.METRICS and (api.read_requires_key or api.metrics_key_sha256):
        return api.api_key_sha256 + api.metrics_key_sha256
    return None


def _check(
    access: Access, service: Service, credentials: HTTPAuthorizationCredentials | None
) -> None:
    digests = required_digests(access, service.settings.api)
    if digests is not None:
        require_key(credentials, digests)


async def write_access(service: ServiceDep, credentials: Credentials) -> None:
    """Writes always need a key."""
    _check(Access.WRITE, service, credentials)


async def read_access(service: ServiceDep, credentials: Credentials) -> None:
    """Reads are open unless ``api.read_requires_key`` is set."""
    _check(Access.READ, service, credentials)


async def metrics_access(service: ServiceDep, credentials: Credentials) -> None:
    """``/metrics``: open unless reads need a key or metrics keys are configured."""
    _check(Access.METRICS, service, credentials)


async def probe_details(service: ServiceDep, credentials: Credentials) -> bool:
    """Whether the health probe may show its details (always, unless reads need a key)."""
    digests = required_digests(Access.READ, service.settings.api)
    key = credentials.credentials if credentials else None
    return digests is None or key_refusal(key, digests) is None


#: The dependency function of each access level, to recognise a route's level.
ACCESS_OF: dict[object, Access] = {
    write_access: Access.WRITE,
    read_access: Access.READ,
    metrics_access: Access.METRICS,
    probe_details: Access.PROBE,
}

WriteAccess = Depends(write_access)
ReadAccess = Depends(read_access)
MetricsAccess = Depends(metrics_access)
ProbeDetails = Annotated[bool, Depends(probe_details)]
