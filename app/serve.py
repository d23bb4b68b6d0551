"""Server entry point: ``streamlit run app/serve.py`` serves app/main.py and sends nested paths to a real page.

Streamlit answers any unknown path with its index page, whose asset links are relative: at ``/a/b/c`` they resolve
under ``/a/b/`` and the browser shows a blank page. A page request whose path has more than one segment is
redirected to its first segment (and ``/lab``, the default page's name, to ``/``), where Streamlit's router shows
that page or says "page not found" and opens the default one.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse

MAIN = Path(__file__).resolve().parent / "main.py"
DEFAULT_PAGE = "lab"  # url_path of main.py's default page
# first path segments Streamlit serves itself (assets, websocket, media, components)
RESERVED = (
    "_stcore",
    "static",
    "media",
    "component",
    "app",
    "favicon.png",
    "manifest.json",
    "auth",
    "oauth2callback",
)


def nested_redirect(path: str, query: str = "") -> str | None:
    """Where a page request for ``path`` should go: its first segment when it is nested, the root for the default
    page's own name (Streamlit serves the default page only at /), else None."""
    parts = [p for p in path.split("/") if p]
    if parts == [DEFAULT_PAGE]:
        return "/" + (f"?{query}" if query else "")
    if (
        len(parts) < 2 or parts[0] in RESERVED or "_stcore" in parts
    ):  # the client probes <page>/_stcore/health
        return None
    return "/" + parts[0] + (f"?{query}" if query else "")


class NestedPaths:
    """ASGI middleware: a browser's GET/HEAD of a nested page path (Accept: text/html) -> 302 to its first segment."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and b"text/html" in headers.get(b"accept", b"")
        ):
            to = nested_redirect(scope.get("path", ""), scope.get("query_string", b"").decode("latin-1"))
            if to is not None:
                await RedirectResponse(to, status_code=302)(scope, receive, send)
                return
        await self.app(scope, receive, send)


app = st.App(MAIN, middleware=[Middleware(NestedPaths)])
