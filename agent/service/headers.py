"""Security headers on every response (pure ASGI middleware: streams such as SSE pass untouched).

- `Content-Security-Policy`: the app's own files only (no inline script or style, no CDN);
  images may be data:/blob: (rendered PNGs, PDF pages); `frame-ancestors` lists who may embed
  the app: CHARTAGENT_APP_FRAME_ANCESTORS, else 'self' and the trusted EHR issuers' origins.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (a URL never leaks to
  another site through Referer).
- `Cache-Control: no-store` on the API and the auth routes (SMART requires it of token-bearing
  answers; patient data must not sit in shared caches), whatever the route set.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.service.issuers import trusted_issuers
from agent.settings import Settings

_NO_STORE_PREFIXES = ("/api/", "/app/launch", "/app/callback", "/app/logout", "/mcp", "/cds-services")


def frame_ancestors(settings: Settings) -> str:
    if settings.app_frame_ancestors:
        return settings.app_frame_ancestors
    origins = []
    for iss in trusted_issuers(settings):
        parts = urlsplit(iss)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return " ".join(["'self'", *dict.fromkeys(origins)])


def content_security_policy(settings: Settings) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            f"frame-ancestors {frame_ancestors(settings)}",
            "object-src 'none'",
            "base-uri 'none'",
        ]
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self._csp = content_security_policy(settings).encode()
        self._common = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        no_store = path.startswith(_NO_STORE_PREFIXES)
        replaced = {name for name, _ in self._common}
        if no_store:
            replaced.add(b"cache-control")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
                # A route that sets its own policy keeps it (a deliberate, reviewed exception).
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", self._csp))
                headers.extend(self._common)
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
