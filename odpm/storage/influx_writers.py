"""Writing line protocol to InfluxDB: the two dialects and the error classes.

``V1Writer`` POSTs to ``/write`` with httpx (InfluxDB 1.x, 2.x through its v1
compatibility API, 3.x) and can ``CREATE DATABASE``; ``V2Writer`` uses
influxdb-client's *synchronous* write API (its batching mode is known to lose
data; batching and retries are the forwarder's).  Both raise the same
:class:`WriteError` subclasses, classified once by :func:`classify_status`; what
the forwarder does with each is described in :mod:`odpm.storage.influx`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol, runtime_checkable

import httpx

from odpm.config import InfluxConfig


class WriteError(Exception):
    """A batch was not written."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TransientWriteError(WriteError):
    """Worth retrying as is: the server was unreachable, slow or failing (5xx)."""


class AuthWriteError(WriteError):
    """401/403: the credentials are wrong or lack write permission."""


class RejectedBatchError(WriteError):
    """400/422, about the data itself: retrying the same batch cannot succeed."""


class MissingTargetError(WriteError):
    """404: the database (v1) or bucket (v2) is not there; a configuration state."""


class PausedWriteError(WriteError):
    """Another 4xx: not about the data, so the batch waits until the cause is fixed."""


def classify_status(status: int, message: str) -> WriteError:
    """Map an HTTP status (either dialect) onto the forwarder's error classes."""
    text = f"HTTP {status}: {message}".strip()
    if status in (401, 403):
        return AuthWriteError(text, status)
    if status == 404:
        return MissingTargetError(text, status)
    if status in (408, 429) or status >= 500:
        return TransientWriteError(text, status)
    if status in (400, 422):
        return RejectedBatchError(text, status)
    if 400 <= status < 500:
        return PausedWriteError(text, status)
    return TransientWriteError(text, status)


class LineWriter(Protocol):
    """Writes one batch of line protocol (precision µs) or raises a WriteError subclass."""

    def write(self, body: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class DatabaseCreator(Protocol):
    """A writer that can create its target (the v1 dialect's ``CREATE DATABASE``)."""

    def create_database(self) -> None: ...


def v1_auth(
    config: InfluxConfig,
) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Headers and auth for the v1 API: token header, basic auth, or nothing."""
    if config.token:
        return {"Authorization": f"Token {config.token}"}, None
    if config.username:
        return {}, httpx.BasicAuth(config.username, config.password)
    return {}, None


class V1Writer:
    """``POST {url}/write?db=&rp=&precision=u`` over one pooled httpx client."""

    def __init__(self, config: InfluxConfig) -> None:
        if not config.url:
            raise ValueError("storage.influx.url is empty: nothing to forward to")
        headers, auth = v1_auth(config)
        self._client = httpx.Client(
            base_url=config.url,
            headers={**headers, "Content-Type": "text/plain; charset=utf-8"},
            auth=auth,
            timeout=config.timeout_s,
        )
        self._database = config.database
        self._params = {"db": config.database, "precision": "u"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy

    def write(self, body: str) -> None:
        try:
            r = self._client.post("/write", params=self._params, content=body.encode("utf-8"))
        except httpx.HTTPError as exc:
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= r.status_code < 300:
            return
        raise classify_status(r.status_code, _error_text(r.text))

    def create_database(self) -> None:
        """``CREATE DATABASE`` (a no-op when it exists); raises a WriteError if refused.

        InfluxQL reports a refused statement either as an HTTP error (401/403
        for a user without the admin privilege) or as 200 with an ``error`` in
        the statement's result; both are errors here.
        """
        name = self._database.replace("\\", "\\\\").replace('"', '\\"')
        try:
            r = self._client.post("/query", params={"q": f'CREATE DATABASE "{name}"'})
        except httpx.HTTPError as exc:
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= r.status_code < 300:
            raise classify_status(r.status_code, _error_text(r.text))
        error = _statement_error(r.text)
        if error:
            raise AuthWriteError(f"CREATE DATABASE refused: {error}", r.status_code)

    def close(self) -> None:
        self._client.close()


def _statement_error(body: str) -> str | None:
    """The first ``results[].error`` of an InfluxQL answer, if any."""
    import json

    with contextlib.suppress(ValueError, AttributeError, TypeError):
        for result in json.loads(body).get("results", []):
            if isinstance(result, dict) and isinstance(result.get("error"), str):
                return str(result["error"])[:2000]
    return None


def _error_text(body: str) -> str:
    """InfluxDB answers ``{"error": "..."}``; keep the message, bounded."""
    import json

    with contextlib.suppress(ValueError, AttributeError):
        msg = json.loads(body).get("error")
        if isinstance(msg, str):
            return msg[:2000]
    return body.strip()[:2000]


class V2Writer:
    """influxdb-client's synchronous write API: ``/api/v2/write`` with org, bucket, token."""

    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        if not config.url:
            raise ValueError("storage.influx.url is empty: nothing to forward to")
        if not config.org:
            raise ValueError("storage.influx.org must be set for the v2 dialect")
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token,
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = config.bucket
        self._org = config.org
        self._precision: Any = WritePrecision.US

    def write(self, body: str) -> None:
        from influxdb_client.rest import ApiException

        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=body.encode("utf-8"),
                write_precision=self._precision,
            )
        except ApiException as exc:
            raise classify_status(
                int(exc.status or 0), _error_text(str(exc.body or exc.reason))
            ) from exc
        except Exception as exc:  # urllib3 connection errors, timeouts, ...
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def make_writer(config: InfluxConfig) -> LineWriter:
    if config.dialect == "v2":
        return V2Writer(config)
    return V1Writer(config)
