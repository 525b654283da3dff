"""Cost of the request guard (api/guard.py) per request, in process.

The same app is built twice, with and without :class:`api.guard.RequestGuard`, and
driven through ASGI directly (no sockets, so the figure is the guard's own work:
matching the route table, the key check, the body counter).  Printed: requests/s of
each for a cheap read (``GET /api/v1/devices``, no devices) and for a write refused
for its key (``PUT .../acquisition`` without one), and the ratio guarded/unguarded.

Run: ``python3 bench/guard.py`` (a few seconds).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.guard import RequestGuard  # noqa: E402
from odpm.config import ApiConfig, Settings, StorageConfig, hash_api_key  # noqa: E402
from odpm.service import Service  # noqa: E402

REQUESTS = 4000


def _app(data_dir: Path, guarded: bool) -> Any:
    settings = Settings(
        storage=StorageConfig(data_dir=data_dir), api=ApiConfig(api_key_sha256=[hash_api_key("k")])
    )
    app = create_app(Service(settings), manage_service=False)
    if not guarded:
        app.user_middleware = [
            m for m in app.user_middleware if getattr(m, "cls", None) is not RequestGuard
        ]
    return app


async def _rate(app: Any, method: str, path: str, body: bytes) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    headers = [(b"host", b"x"), (b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    for _ in range(200):  # warm up (builds the middleware stack and route table)
        await app(dict(scope), receive, send)
    started = time.perf_counter()
    for _ in range(REQUESTS):
        await app(dict(scope), receive, send)
    return REQUESTS / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("GET /api/v1/devices", "GET", "/api/v1/devices", b""),
            ("PUT acquisition, no key", "PUT", "/api/v1/devices/sim1/acquisition", b'{"a":1}'),
        ]
        for name, method, path, body in cases:
            plain = asyncio.run(_rate(_app(Path(tmp) / "a", False), method, path, body))
            guarded = asyncio.run(_rate(_app(Path(tmp) / "b", True), method, path, body))
            print(
                f"{name:26s} unguarded {plain:8.0f} req/s  guarded {guarded:8.0f} req/s  "
                f"ratio {guarded / plain:.2f}"
            )


if __name__ == "__main__":
    main()
