"""What every request to the annotation server passes before it reaches the app, and what every response
carries: the server is local and has no authentication, so it refuses what a web page elsewhere, or a
DNS-rebinding name, could make a browser send it.

- **Host allow-list** (when bound to loopback): the ``Host`` header must name this machine (the loopback
  names and the ``--host`` address), else 400. A rebinding name (attacker.example resolving to
  127.0.0.1) is refused.
- **Cross-site requests** to ``/api/`` are refused (403) when the browser marks them so
  (``Sec-Fetch-Site: cross-site`` or ``same-site``): another page, even one on another port of this
  machine, cannot make the server read an image or start an embedding.
- **JSON only**: POST, PUT and PATCH need ``Content-Type: application/json``, empty bodies included
  (415). A page elsewhere can send a cross-origin POST without asking first only with a form's content
  types, so no such request changes the file or runs a generation. (DELETE takes no body; a browser
  asks first before sending one cross-origin, and the server never says yes.)
- **Body size**: bodies over the limit get 413, by ``Content-Length`` or while streaming (:class:`BodyLimit`).
- **Headers on every response** (:data:`SECURITY_HEADERS`): the page may not be framed (clickjacking),
  content types are not sniffed, scripts, styles and images come from this server only, and nothing is
  sent as a referrer.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
JSON_METHODS = ("POST", "PUT", "PATCH")
CROSS_SITE = (b"cross-site", b"same-site")


def allowed_hosts_for(host: str) -> list[str]:
    """The ``Host`` names a server bound to the loopback address ``host`` answers to: the loopback names
    and ``host`` itself (so ``--host 127.0.0.2`` accepts its own requests)."""
    names = list(LOOPBACK_NAMES)
    bare = host.strip("[]").lower()
    if bare not in names:
        names.append(bare)
    return names


class Guard:
    """ASGI middleware: the checks and headers of the module. ``allowed_hosts`` None accepts any Host."""

    def __init__(self, app, allowed_hosts: Optional[Sequence[str]] = None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else {h.strip("[]").lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.lower().encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            await json_error(send_with_headers, *refusal)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope) -> Optional[tuple[int, str]]:
        """(status, message) when the request is refused, else None."""
        headers = {name.lower(): value for name, value in scope.get("headers") or []}
        if self.allowed_hosts is not None:
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                return 400, (f"this server answers to Host {sorted(self.allowed_hosts)}, got {host[:60]!r} "
                             "(a name that resolves to this machine is refused: DNS rebinding)")
        path = scope.get("path", "")
        if path.startswith("/api/") and headers.get(b"sec-fetch-site", b"").lower() in CROSS_SITE:
            return 403, "requests from another site are refused: open the page of this server itself"
        if scope.get("method") in JSON_METHODS:
            content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if content_type != "application/json":
                return 415, (f"send {scope['method']} requests with Content-Type: application/json "
                             f"(an empty body too), got {content_type[:60] or 'none'!r}")
        return None


def host_name(header: str) -> str:
    """The name of a Host header without its port, lower case: ``[::1]:8765`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class BodyLimit:
    """ASGI middleware: answers 413 with a JSON message when a request body exceeds ``max_bytes``
    (by its Content-Length, or while streaming one without it)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await json_error(send, 413, self._too_large(declared.decode("latin-1")[:40]))
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await json_error(send, 413, self._too_large(f"more than {size}"))
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: str) -> str:
        return f"request body of {size} bytes is larger than the limit of {self.max_bytes} bytes"


async def json_error(send, status: int, message: str) -> None:
    """Send ``{"error": message}`` with ``status``."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
