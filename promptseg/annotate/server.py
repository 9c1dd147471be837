"""The HTTP side of the annotation server: a FastAPI app with the JSON API under ``/api`` and the static page.

Every error is JSON ``{"error": message}`` with a 4xx status (5xx only for a bug); the server keeps running.
"""


import json
from importlib import resources
from typing import Any, Optional, Sequence

from promptseg.annotate.errors import ApiError, bad_request
from promptseg.annotate.service import AnnotationService
from promptseg.annotate.store import STATES

MAX_BODY_BYTES = 16 * 1024 * 1024
STATIC_FILES = {
    "index.html": "text/html", "style.css": "text/css",
    "app.js": "text/javascript", "shape.js": "text/javascript", "view.js": "text/javascript", "overlay.js": "text/javascript",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def require_server_packages() -> None:
    """Raise a clear error when the ``annotate`` extra is not installed."""
    missing = []
    for name in ("fastapi", "uvicorn", "pycocotools"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ModuleNotFoundError(
            f"promptseg annotate needs {', '.join(missing)}: pip install \"promptseg[annotate]\""
        )


def create_app(
    service: AnnotationService, max_body_bytes: int = MAX_BODY_BYTES, allowed_hosts: Optional[Sequence[str]] = None
):
    """The FastAPI application serving ``service``.

    Args:
        max_body_bytes: larger request bodies get a 413.
        allowed_hosts: Host headers accepted (against DNS rebinding when bound to loopback); None accepts any.
    """
    require_server_packages()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="promptseg annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"no such endpoint: {request.method} {request.url.path}" if error.status_code == 404 else str(error.detail)
        return JSONResponse({"error": message}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"bad request: {error.errors()}"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    def as_json(payload: Any) -> Response:
        return Response(json.dumps(payload), media_type="application/json")

    async def json_body(request: Request, required: bool = True) -> Any:
        raw = await request.body()
        if not raw and not required:
            return None
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(415, f"send the body as JSON with Content-Type: application/json, got {content_type or 'none'!r}")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise bad_request(f"the request body is not valid JSON: {error}") from None

    # ------------------------------------------------------------- static page
    @app.get("/")
    async def index() -> Response:
        return static_file("index.html")

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise ApiError(404, f"no such static file {name[:60]!r}")
        return static_file(name)

    def static_file(name: str) -> Response:
        content = (resources.files("promptseg.annotate") / "static" / name).read_bytes()
        return Response(content, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------- API
    @app.get("/api/images")
    async def images() -> Response:
        listed = service.list_images()
        progress = {state: sum(1 for image in listed if image["state"] == state) for state in STATES}
        return as_json({"images": listed, "categories": [c["name"] for c in service.store.categories()],
                        "labels": service.store.labels, "progress": {**progress, "total": len(listed)}})

    @app.get("/api/images/{image_id}")
    async def image_bytes(image_id: str) -> Response:
        number, image = service.image(image_id)
        content, media_type = await run_in_threadpool(image.browser_bytes)
        service.opened(number)
        return Response(content, media_type=media_type)

    @app.get("/api/images/{image_id}/annotations")
    async def image_annotations(image_id: str) -> Response:
        return as_json(await run_in_threadpool(service.snapshot, image_id))

    @app.post("/api/images/{image_id}/predict")
    async def predict(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.predict, image_id, await json_body(request)))

    @app.post("/api/images/{image_id}/annotations")
    async def annotate(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.annotate, image_id, await json_body(request)))

    @app.post("/api/images/{image_id}/prefill")
    async def prefill(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.prefill, image_id, await json_body(request, required=False)))

    @app.post("/api/images/{image_id}/relabel")
    async def relabel_many(image_id: str, request: Request) -> Response:
        return as_json({"annotations": await run_in_threadpool(service.relabel, image_id, await json_body(request))})

    @app.post("/api/images/{image_id}/delete")
    async def delete_many(image_id: str, request: Request) -> Response:
        return as_json({"annotations": await run_in_threadpool(service.delete, image_id, await json_body(request))})

    @app.post("/api/images/{image_id}/undo")
    async def undo(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.step, image_id, await json_body(request, required=False), True))

    @app.post("/api/images/{image_id}/redo")
    async def redo(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.step, image_id, await json_body(request, required=False), False))

    @app.put("/api/images/{image_id}/state")
    async def set_state(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.set_state, image_id, await json_body(request)))

    @app.delete("/api/images/{image_id}/proposals/{proposal_id}")
    async def reject_proposal(image_id: str, proposal_id: str) -> Response:
        return as_json(await run_in_threadpool(service.reject_proposal, image_id, proposal_id))

    @app.patch("/api/annotations/{annotation_id}")
    async def relabel(annotation_id: str, request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) != {"category"}:
            raise bad_request('send {"category": "new label"} to relabel an annotation')
        return as_json(await run_in_threadpool(service.store.relabel, service.annotation_id(annotation_id), body["category"]))

    @app.put("/api/annotations/{annotation_id}")
    async def edit(annotation_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.edit, annotation_id, await json_body(request)))

    @app.delete("/api/annotations/{annotation_id}")
    async def delete(annotation_id: str) -> Response:
        return as_json(await run_in_threadpool(service.store.delete, service.annotation_id(annotation_id)))

    @app.get("/api/annotations/{annotation_id}/prompt")
    async def object_prompt(annotation_id: str) -> Response:
        return as_json(await run_in_threadpool(service.object_prompt, annotation_id))

    @app.get("/api/annotations/{annotation_id}/polygon")
    async def object_polygon(annotation_id: str, tolerance: Optional[str] = None) -> Response:
        return as_json(await run_in_threadpool(service.object_polygon, annotation_id, tolerance))

    @app.get("/api/export")
    async def export() -> Response:
        return as_json(service.store.export())

    @app.get("/api/export/{fmt}")
    async def export_format(fmt: str, tolerance: Optional[str] = None) -> Response:
        content, media_type, file_name = await run_in_threadpool(service.export, fmt, tolerance)
        return Response(content, media_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="{file_name}"'})

    @app.get("/api/status")
    async def status() -> Response:
        return as_json({"cache": {**service.cache.stats, "capacity": service.cache.capacity, "keys": service.cache.keys()}})

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


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
            await self._too_large(send, declared.decode("latin-1"))
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send, f"more than {size}")
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send, size: str) -> None:
        body = json.dumps({"error": f"request body of {size} bytes is larger than the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
