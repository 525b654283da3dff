"""The lab console (``/``) and the API documentation pages (``/docs``, ``/redoc``), served
from files in ``api/web/`` so that nothing is fetched from the internet.

The console is static: plain ES modules that read only the public HTTP API.
Swagger UI and ReDoc are the npm builds vendored into ``api/web/vendor/`` by
``scripts/vendor-web`` (versions in ``api/web/vendor/VERSIONS.txt``); FastAPI's
own pages would load them from a CDN, a blank page on a lab network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

#: The console's files (shipped as package data).
WEB_DIR = Path(__file__).parent / "web"
#: Where those files are served.
WEB_PREFIX = "/web"
_VENDOR = f"{WEB_PREFIX}/vendor"


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` and local ``/docs`` and ``/redoc``.

    The app must be created with ``docs_url=None, redoc_url=None`` so these
    replace FastAPI's CDN-backed pages.
    """
    app.mount(WEB_PREFIX, StaticFiles(directory=WEB_DIR), name="web")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        # no-cache: a browser revalidates, so an upgraded service serves its own page.
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{_VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{_VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{_VENDOR}/swagger-ui/favicon-32x32.png",
            # The default validator badge calls validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{_VENDOR}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
