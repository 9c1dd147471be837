"""The HTTP side of the annotation server: a FastAPI app with the JSON API under ``/api`` and the static page.

Every error is JSON ``{"error": message}`` with a 4xx status (5xx only for a bug); the server keeps running.
Requests pass :mod:`promptseg.annotate.guard` first (Host, cross-site, JSON content type, body size,
security headers); bodies are parsed by :func:`promptseg.annotate.jsonbody.parse_json` (bounded). The
OpenAPI description of the API is served at ``/api/openapi.json`` (:mod:`promptseg.annotate.schema`).
"""


import json
from importlib import resources
from typing import Any, Optional, Sequence

from promptseg.annotate.errors import ApiError, bad_request
from promptseg.annotate.guard import SECURITY_HEADERS, BodyLimit, Guard
from promptseg.annotate.jsonbody import parse_json
from promptseg.annotate.schema import OPENAPI_PATH, request_body
from promptseg.annotate.service import AnnotationService
from promptseg.annotate.store import STATES

MAX_BODY_BYTES = 16 * 1024 * 1024
STATIC_FILES = {
    "index.html": "text/html", "style.css": "text/css",
    "app.js": "text/javascript", "shape.js": "text/javascript", "view.js": "text/javascript", "overlay.js": "text/javascript",
}


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
        allowed_hosts: Host headers accepted (against DNS rebinding when bound to loopback:
            :func:`promptseg.annotate.guard.allowed_hosts_for`); None accepts any.
    """
    require_server_packages()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="promptseg annotate", docs_url=None, redoc_url=None, openapi_url=OPENAPI_PATH)
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
        # Sent outside the middleware (by Starlette's outermost layer), so the headers are added here.
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500,
                            headers=SECURITY_HEADERS)

    def as_json(payload: Any) -> Response:
        return Response(json.dumps(payload), media_type="application/json")

    async def json_body(request: Request, required: bool = True) -> Any:
        """The parsed body (the Guard has checked its content type); None for an empty optional one."""
        raw = await request.body()
        if not raw and not required:
            return None
        return parse_json(raw)

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
        unavailable = [{"file_name": f.file_name, "reason": f.reason} for f in service.unavailable]
        return as_json({"images": listed, "unavailable": unavailable,
                        "categories": [c["name"] for c in service.store.categories()],
                        "labels": service.store.labels, "progress": {**progress, "total": len(listed)}})

    @app.get("/api/images/{image_id}")
    async def image_bytes(image_id: str) -> Response:
        number, _ = service.image(image_id)
        content, media_type = await run_in_threadpool(service.browser_bytes, number)
        service.opened(number)
        return Response(content, media_type=media_type)

    @app.get("/api/images/{image_id}/annotations")
    async def image_annotations(image_id: str) -> Response:
        return as_json(await run_in_threadpool(service.snapshot, image_id))

    @app.post("/api/images/{image_id}/predict", openapi_extra=request_body("predict"))
    async def predict(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.predict, image_id, await json_body(request)))

    @app.post("/api/images/{image_id}/annotations", openapi_extra=request_body("accept"))
    async def annotate(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.annotate, image_id, await json_body(request)))

    @app.post("/api/images/{image_id}/prefill", openapi_extra=request_body("prefill"))
    async def prefill(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.prefill, image_id, await json_body(request, required=False)))

    @app.post("/api/images/{image_id}/relabel", openapi_extra=request_body("relabel_many"))
    async def relabel_many(image_id: str, request: Request) -> Response:
        return as_json({"annotations": await run_in_threadpool(service.relabel, image_id, await json_body(request))})

    @app.post("/api/images/{image_id}/delete", openapi_extra=request_body("delete_many"))
    async def delete_many(image_id: str, request: Request) -> Response:
        return as_json({"annotations": await run_in_threadpool(service.delete, image_id, await json_body(request))})

    @app.post("/api/images/{image_id}/undo", openapi_extra=request_body("step"))
    async def undo(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.step, image_id, await json_body(request, required=False), True))

    @app.post("/api/images/{image_id}/redo", openapi_extra=request_body("step"))
    async def redo(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.step, image_id, await json_body(request, required=False), False))

    @app.put("/api/images/{image_id}/state", openapi_extra=request_body("state"))
    async def set_state(image_id: str, request: Request) -> Response:
        return as_json(await run_in_threadpool(service.set_state, image_id, await json_body(request)))

    @app.delete("/api/images/{image_id}/proposals/{proposal_id}")
    async def reject_proposal(image_id: str, proposal_id: str) -> Response:
        return as_json(await run_in_threadpool(service.reject_proposal, image_id, proposal_id))

    @app.patch("/api/annotations/{annotation_id}", openapi_extra=request_body("relabel"))
    async def relabel(annotation_id: str, request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) != {"category"}:
            raise bad_request('send {"category": "new label"} to relabel an annotation')
        return as_json(await run_in_threadpool(service.store.relabel, service.annotation_id(annotation_id), body["category"]))

    @app.put("/api/annotations/{annotation_id}", openapi_extra=request_body("edit"))
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
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)  # added last: the outermost, so every response has its headers
    return app
