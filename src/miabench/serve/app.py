"""The audit web app: thin routes over :class:`~miabench.serve.auditor.Auditor`.

Pages: ``/`` (models), ``/models/{id}`` (upload), ``POST /models/{id}/audit`` (reports),
``/models/{id}/report`` (the folder's HTML audit report, when written). JSON API:
``GET /api/models``, ``POST /api/audit``, ``GET /healthz``; errors are ``{"error": ...}``.
Limits sit at the edge: the body size before parsing (413), the number of files while
parsing (413), the worker pool's queue (503); decoding and layout checks give 422.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from miabench.serve.auditor import Auditor
from miabench.serve.models import ModelError
from miabench.serve.plots import tensor_image
from miabench.serve.uploads import Upload, UploadError, configure_pillow

log = logging.getLogger(__name__)

#: what a report page may load: itself and data: images; no script at all
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class BodyLimit:
    """ASGI middleware: refuse request bodies above ``limit`` bytes with 413, by the declared
    ``Content-Length`` before reading and by counting while streaming (no length declared)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        message = f"request body exceeds serve.max_upload_mb ({self.limit} bytes)"
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await JSONResponse({"error": message}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            received = await receive()
            seen += len(received.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, message)
            return received

        await self.app(scope, counted, send)


class AuditService:
    """The models' auditors and the bounded pool their audits run on."""

    def __init__(self, auditors: dict[str, Auditor], workers: int, queue: int) -> None:
        self.auditors = auditors
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="audit")
        self.slots = threading.BoundedSemaphore(max(1, workers) + max(0, queue))

    def auditor(self, model_id: str) -> Auditor:
        auditor = self.auditors.get(model_id)
        if auditor is None:
            raise HTTPException(404, f"no model {model_id!r} (GET /api/models lists them)")
        return auditor

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the pool, or 503 at once when the pool and its queue are full."""
        if not self.slots.acquire(blocking=False):
            raise HTTPException(503, "the server is busy (serve.workers + serve.queue); retry")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.slots.release()


async def read_audit_form(request: Request, max_images: int) -> tuple[str, list[Upload]]:
    """The multipart form's ``model`` and ``images`` (bytes in memory, names echoed only)."""
    try:
        form = await request.form(max_files=max_images, max_fields=16)
    except (MultiPartException, StarletteHTTPException) as err:
        # Starlette turns its parser's errors into a 400 inside an app; too many files is
        # a limit, 413 like the body size
        message = str(getattr(err, "detail", None) or err)
        status = 413 if "Too many files" in message else getattr(err, "status_code", 400)
        raise HTTPException(status, f"{message} (serve.max_images = {max_images})") from err
    model = form.get("model")
    if not isinstance(model, str) or not model:
        raise HTTPException(400, "form field 'model' (a model id) is missing")
    files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
    if not files:
        raise HTTPException(400, "no files in form field 'images'")
    uploads = [Upload((f.filename or "")[:200], await f.read()) for f in files]
    await form.close()
    return model, uploads


def _error_response(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api") or request.url.path == "/healthz":
        return JSONResponse({"error": message}, status_code=status)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def _public(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def _report_views(auditor: Auditor, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reports with their figures: the processed sample and the score among the calibration
    half's histograms (drawn when the model loaded; only the marker is added here)."""
    shown = []
    for report in reports:
        item = report["_item"]
        images = {"input": tensor_image(item["input"])}
        if item["target"].ndim == 3:  # paired tasks: the ground truth the output is held to
            images["target"] = tensor_image(item["target"])
        histogram = auditor.histograms.render(report["score"])
        shown.append({**_public(report), "images": images, "histogram": histogram})
    return shown


def _audit_and_show(auditor: Auditor, uploads: list[Upload]) -> list[dict[str, Any]]:
    """The report page's work, one trip to the worker pool: audit, then the figures (a
    second trip would queue each request twice behind the others)."""
    return _report_views(auditor, auditor.audit(uploads))


def create_app(service: AuditService, settings: Any) -> FastAPI:
    """The FastAPI application over ``service`` (limits from the ``serve`` config)."""
    configure_pillow(int(settings.max_pixels))
    app = FastAPI(
        title="miabench audit server",
        description="Membership-inference audits of trained models on uploaded images.",
        version="1",
    )
    app.state.templates = Jinja2Templates(
        directory=str(resources.files("miabench.serve") / "templates")
    )
    app.state.service = service
    max_images = int(settings.max_images)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1] != host:
            return JSONResponse({"error": "cross-origin requests are refused"}, status_code=403)
        try:
            response = await call_next(request)
        except HTTPException as err:  # raised by BodyLimit while the body streams
            response = JSONResponse({"error": err.detail}, status_code=err.status_code)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
        # the upload form's POST, which the origin check above refuses
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    app.add_middleware(BodyLimit, limit=int(float(settings.max_upload_mb) * 2**20))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        return _error_response(request, err.status_code, str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> Response:
        return _error_response(request, 422, f"invalid request: {err.errors()}")

    async def audit(
        model_id: str, uploads: list[Upload], page: bool = False
    ) -> tuple[Auditor, list[dict]]:
        auditor = service.auditor(model_id)
        work = partial(_audit_and_show, auditor) if page else auditor.audit
        try:
            return auditor, await service.run(work, uploads)
        except UploadError as err:
            raise HTTPException(err.status, str(err)) from err
        except ModelError as err:
            raise HTTPException(422, f"model {model_id} cannot be audited: {err}") from err

    def summaries() -> list[dict[str, Any]]:
        return [a.summary() for a in service.auditors.values()]

    @app.get("/healthz", summary="Liveness: the server answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": len(service.auditors)}

    @app.get("/api/models", summary="The models this server audits")
    async def api_models() -> list[dict[str, Any]]:
        return summaries()

    audit_body = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["model", "images"],
                        "properties": {
                            "model": {"type": "string", "description": "a model id"},
                            "images": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": f"PNG, JPEG or WebP; at most {max_images}",
                            },
                        },
                    }
                }
            },
        },
        "responses": {
            str(code): {"description": why}
            for code, why in (
                (400, "malformed form"),
                (404, "unknown model"),
                (413, "body or file count over the limits"),
                (422, "an image that is not a decodable PNG/JPEG/WebP in the dataset's layout"),
                (503, "busy"),
            )
        },
    }

    @app.post(
        "/api/audit",
        summary="Audit uploaded images against one model",
        description=(
            "Per image: filename, sha256 (of the file), score (higher = more member-like), "
            "membership_probability (calibrated on calibration.calibrated_on, prior 0.5), "
            "probability_interval (bootstrap), percentile_among_members, "
            "percentile_among_nonmembers, decision_at_fpr ({fpr: member, threshold, note}). "
            "calibration.scores says whose scores the calibration half holds: the recorded "
            "ones, or, where a trainable attack's refit does not reproduce them, its own "
            "(refit: how far they are from the recorded ones)."
        ),
        openapi_extra=audit_body,
    )
    async def api_audit(request: Request) -> dict[str, Any]:
        model_id, uploads = await read_audit_form(request, max_images)
        auditor, reports = await audit(model_id, uploads)
        return {
            "model": model_id,
            "attack": auditor.entry.attack,
            "calibration": auditor.calibration_summary(),
            "refit": auditor.refit,
            "images": [_public(r) for r in reports],
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def models_page(request: Request) -> Response:
        return app.state.templates.TemplateResponse(
            request, "models.html", {"models": summaries(), "settings": settings}
        )

    @app.get("/models/{model_id}", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page(request: Request, model_id: str) -> Response:
        auditor = service.auditor(model_id)
        return app.state.templates.TemplateResponse(
            request,
            "upload.html",
            {"model": auditor.summary(), "max_images": max_images},
        )

    @app.post("/models/{model_id}/audit", response_class=HTMLResponse, include_in_schema=False)
    async def report_page(request: Request, model_id: str) -> Response:
        form_model, uploads = await read_audit_form(request, max_images)
        if form_model != model_id:
            raise HTTPException(400, "the form's model is not the page's model")
        # the figures are drawn on the worker pool with the audit: never on the event loop,
        # and inside the same bound on concurrent work
        auditor, shown = await audit(model_id, uploads, page=True)
        return app.state.templates.TemplateResponse(
            request,
            "report.html",
            {
                "model": auditor.summary(),
                "calibration": auditor.calibration_summary(),
                "reports": shown,
                "reveal": bool(settings.reveal_ground_truth),
                "tolerance": f"{float(settings.check_tolerance):g}",
            },
        )

    @app.get("/models/{model_id}/report", include_in_schema=False)
    async def folder_report(model_id: str) -> Response:
        report = service.auditor(model_id).entry.report
        if report is None:
            raise HTTPException(404, f"no report.html in model {model_id}'s folder yet")
        return FileResponse(report, media_type="text/html")

    return app
