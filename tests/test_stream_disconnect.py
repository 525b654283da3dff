"""A live stream ends, and releases its queue, when its client disconnects, on any ASGI
server.

Servers implementing ASGI spec 2.4 (and uvicorn after a disconnect) let ``send`` return
silently on a closed connection, and Starlette then stops listening for
``http.disconnect`` itself; a stream that only notices failed writes would then hold its
subscription (and ``odpm_stream_clients``) for ever.  Driven in process through ASGI with
exactly that server behaviour; the device is configured but never started (no events at
all, so only the disconnect can end the stream)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from odpm.config import DeviceConfig, Settings, StorageConfig
from odpm.service import Service


# Every SSE route: a device's stream, and the all-devices summary stream.
@pytest.mark.parametrize("path", ["/api/v1/devices/dev1/stream", "/api/v1/stream"])
def test_a_stream_ends_when_its_client_disconnects(tmp_path: Path, path: str) -> None:
    settings = Settings(
        storage=StorageConfig(data_dir=tmp_path),
        devices=[DeviceConfig(id="dev1", address="socket://127.0.0.1:9")],
    )
    service = Service.from_settings(settings)
    app = create_app(service, manage_service=False)
    gone = asyncio.Event()
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent:  # the request itself (a GET: no body)
            sent.append({"type": "received"})
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)  # after a disconnect a 2.4 server just drops it

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"x")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip

    async def scenario() -> None:
        service.broadcaster.bind(asyncio.get_running_loop())
        call = asyncio.create_task(app(scope, receive, send))
        for _ in range(200):
            if service.broadcaster.subscriber_count == 1:
                break
            await asyncio.sleep(0.05)
        assert service.broadcaster.subscriber_count == 1, sent
        assert any(m.get("status") == 200 for m in sent), sent
        gone.set()
        await asyncio.wait_for(call, 10)
        assert service.broadcaster.subscriber_count == 0

    asyncio.run(scenario())
