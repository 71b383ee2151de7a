"""The HTTP application of `keepfit serve` (FastAPI): Open Inference Protocol v2, /predict, /feedback,
/metrics, and the admin endpoints.

Endpoints (every error is JSON ``{"error": message}`` with a 4xx status for a client's mistake):

- ``GET /v2/health/live``, ``GET /v2/health/ready`` (503 until a version is loaded, and while draining),
  ``GET /v2``, ``GET /v2/models/{name}``, ``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``
  (one BYTES input of texts; outputs ``label`` BYTES [n], ``score`` FP32 [n], ``probabilities`` FP32 [n, C];
  ``parameters.ids`` the per-text ids feedback names);
- ``POST /predict``: ``{"texts": [...], "top_k": k, "metadata": {...}}`` -> per text ``id``, ``label`` (null
  when abstained), ``score``, ``abstained``, ``top_k``; every response names ``model_version``;
- ``POST /feedback``: ``{"request_id": id, "label": l}`` or a list; 404 for an unknown id, 422 for an unknown
  label (the accepted items of a list are kept);
- ``GET /metrics``: Prometheus text format;
- ``POST /admin/reload`` (optional ``{"ref": "3"}``: serve that version or alias from now on),
  ``POST /admin/drain``, ``POST /admin/resume``: ``Authorization: Bearer <serve.admin_token>``.

Status codes: 400 body not JSON; 401/403 admin token missing/wrong (404 when no token is configured);
404 unknown model name or path; 405 wrong method; 413 body, text count or text length over the limits;
422 wrong shape, empty list, non-string text, unknown label; 503 no version loaded yet, or draining.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import keepfit
from keepfit.config import KeepfitConfig
from keepfit.errors import KeepfitError, RegistryError
from keepfit.serve.batcher import Answered, Draining, MicroBatcher, NotReady
from keepfit.serve.log import Feedback, PredictionLog, log_path_for
from keepfit.serve.metrics import ServeMetrics
from keepfit.serve.requests import BadRequest, parse_feedback, parse_infer, parse_json, parse_predict
from keepfit.serve.runtime import ModelSlot, ServedModel, Watcher

__all__ = ["create_app", "ServerState", "log_path_for"]

log = logging.getLogger("keepfit.serve")


@dataclass
class ServerState:
    config: KeepfitConfig
    slot: ModelSlot
    watcher: Watcher
    batcher: MicroBatcher
    log: PredictionLog
    metrics: ServeMetrics
    model_name: str
    admin_token: str | None


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"The request body is {declared} bytes; the limit is {limit} (serve.max_body_bytes).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"The request body exceeds the limit of {limit} bytes (serve.max_body_bytes).")
        chunks.append(chunk)
    return b"".join(chunks)


def _answers_json(result: Answered) -> list[dict[str, Any]]:
    out = []
    for rid, a in zip(result.ids, result.answers, strict=True):
        item: dict[str, Any] = {"id": rid}
        if result.task == "regression":
            item["prediction"] = a.value
        else:
            item.update(label=a.label, score=round(a.score, 6), abstained=a.abstained)
            if a.labels is not None:
                item["labels"] = a.labels
            item["top_k"] = [{"label": lab, "score": round(p, 6)} for lab, p in a.top_k]
        out.append(item)
    return out


class _Metered:
    """Counts requests by endpoint and status and times them (pure ASGI: Starlette's ``BaseHTTPMiddleware``
    streams the body after the headers as a second write, which with Nagle and delayed ACKs added ~40 ms to
    every small response on localhost)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            if 400 <= status[0] < 500:
                self.metrics.errors.labels("bad_request").inc()


def create_app(config: KeepfitConfig, *, watcher_factory: Callable[..., Watcher] = Watcher) -> FastAPI:
    """The app serving ``config.serve.model_ref`` of the project's registry. Loading the first version,
    following the alias and the micro-batcher's worker start with the app (its lifespan) and stop with it."""
    serve = config.serve
    metrics = ServeMetrics.create()
    slot = ModelSlot()
    prediction_log = PredictionLog(log_path_for(config), redact=serve.redact)

    def on_error(kind: str, err: Exception) -> None:
        metrics.errors.labels(kind).inc()

    def on_swap(old: str | None, new: ServedModel) -> None:
        metrics.model_version.set(float(new.version) if new.version.isdigit() else -1)
        if old is not None:
            metrics.swaps.inc()
        log.warning("serving version %s (%s backend)%s", new.version, new.backend, f", was {old}" if old else "")

    slot.on_swap.append(on_swap)
    watcher = watcher_factory(config, slot, on_error=on_error)
    batcher = MicroBatcher(
        slot, prediction_log, max_batch_size=serve.max_batch_size, max_wait_ms=serve.max_wait_ms,
        on_batch=lambda size, seconds: (metrics.batch_size.observe(size), metrics.batch_seconds.observe(seconds)),
    )
    from keepfit.registry.mlflow_registry import model_name_for

    state = ServerState(
        config, slot, watcher, batcher, prediction_log, metrics, model_name_for(config),
        serve.admin_token or os.environ.get("KEEPFIT_ADMIN_TOKEN") or None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        watcher.check()
        watcher.start()
        try:
            yield
        finally:
            batcher.draining = True
            watcher.stop()
            batcher.stop()
            prediction_log.close()

    app = FastAPI(title="keepfit serve", version=keepfit.__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.keepfit = state

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"No such endpoint {request.url.path}.", 405: f"{request.method} is not allowed on "
                   f"{request.url.path}."}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, f"Invalid request: {exc.errors()}")

    app.add_middleware(_Metered, metrics=metrics)

    async def answer(request: Request, parse: Callable[[Any, Any], Any]) -> Answered | JSONResponse:
        try:
            parsed = parse(parse_json(await _read_body(request, serve.max_body_bytes), serve), serve)
        except BadRequest as err:
            return _error(err.status, err.message)
        metrics.in_flight.inc()
        try:
            result = await batcher.submit(parsed.texts, top_k=parsed.top_k, meta=parsed.meta)
        except NotReady:
            metrics.errors.labels("not_ready").inc()
            return _error(503, "No model version is loaded yet: the registry has no "
                          f"{watcher.ref!r}. Run `keepfit fit` (or promote a version); the server picks it up.")
        except Draining:
            return JSONResponse({"error": "The server is draining and takes no new requests: retry in a few seconds "
                                 "(another instance may take over), or an admin resumes it with POST /admin/resume."},
                                503, headers={"Retry-After": "5"})
        except Exception as err:  # the model failed on this batch: a server-side problem, said plainly
            metrics.errors.labels("internal").inc()
            log.exception("prediction failed")
            return _error(500, f"The model could not answer this request ({type(err).__name__}: {err}).")
        finally:
            metrics.in_flight.dec()
        metrics.texts.labels(result.version).inc(len(result.answers))
        abstained = sum(a.abstained for a in result.answers)
        if abstained:
            metrics.abstentions.labels(result.version).inc(abstained)
        return result

    # -- Open Inference Protocol v2 ------------------------------------------------------------------------------

    def ready() -> bool:
        return slot.current is not None and not batcher.draining

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def health_ready() -> JSONResponse:
        return JSONResponse({"ready": ready()}, status_code=200 if ready() else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "keepfit", "version": keepfit.__version__, "extensions": []}

    def known(name: str) -> JSONResponse | None:
        if name != state.model_name:
            return _error(404, f"Unknown model {name!r}; this server serves {state.model_name!r}.")
        return None

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> Any:
        if (missing := known(name)) is not None:
            return missing
        model = slot.current
        if model is None:
            return _error(503, "No model version is loaded yet.")
        n = len(model.labels)
        return {
            "name": state.model_name,
            "versions": [model.version],
            "platform": "onnxruntime" if model.backend == "onnx" else "pytorch",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "score", "datatype": "FP32", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, n]},
            ],
            "parameters": {"task": model.task, "labels": model.labels,
                           "precision": getattr(model.predictor, "precision", None)},
        }

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        if (missing := known(name)) is not None:
            return missing
        return JSONResponse({"name": name, "ready": ready()}, status_code=200 if ready() else 503)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Any:
        if (missing := known(name)) is not None:
            return missing
        result = await answer(request, parse_infer)
        if isinstance(result, JSONResponse):
            return result
        n = len(result.answers)
        body: dict[str, Any] = {
            "model_name": state.model_name,
            "model_version": result.version,
            "id": result.request_id,
            "parameters": {"ids": result.ids},
        }
        if result.task == "regression":
            body["outputs"] = [{"name": "prediction", "datatype": "FP32", "shape": [n],
                                "data": [a.value for a in result.answers]}]
            return JSONResponse(body)
        body["outputs"] = [
            {"name": "label", "datatype": "BYTES", "shape": [n], "data": [a.label or "" for a in result.answers]},
            {"name": "score", "datatype": "FP32", "shape": [n], "data": [round(a.score, 6) for a in result.answers]},
            {"name": "probabilities", "datatype": "FP32", "shape": [n, len(result.labels)],
             "data": [round(p, 6) for a in result.answers for p in a.probabilities]},
        ]
        body["parameters"]["abstained"] = [a.abstained for a in result.answers]
        return JSONResponse(body)

    # -- plain JSON --------------------------------------------------------------------------------------------

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        result = await answer(request, parse_predict)
        if isinstance(result, JSONResponse):
            return result
        # a JSONResponse as is: FastAPI's encoder would walk every float of the answer first (slow under load)
        return JSONResponse({
            "model_version": result.version,
            "request_id": result.request_id,
            "predictions": _answers_json(result),
        })

    @app.post("/feedback")
    async def feedback(request: Request) -> Any:
        try:
            payload = parse_json(await _read_body(request, serve.max_body_bytes), serve)
            pairs = parse_feedback(payload)
        except BadRequest as err:
            return _error(err.status, err.message)
        result = prediction_log.add_feedback(
            [Feedback(rid, label) for rid, label in pairs], source="api", declared=config.labels or ()
        )
        rejected = [{"request_id": rid, "reason": reason} for _, rid, reason in result.rejected]
        if not rejected:
            return {"accepted": result.accepted}
        status = 404 if all(r["reason"].startswith("unknown request id") for r in rejected) else 422
        what = "; ".join(f"{r['request_id']}: {r['reason']}" for r in rejected[:5])
        return _error(status, f"{len(rejected)} feedback item(s) rejected ({what}); {result.accepted} accepted.",
                      accepted=result.accepted, rejected=rejected)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- admin -------------------------------------------------------------------------------------------------

    def denied(request: Request) -> JSONResponse | None:
        if state.admin_token is None:
            return _error(404, "Admin endpoints are off: set serve.admin_token or KEEPFIT_ADMIN_TOKEN to use them.")
        given = request.headers.get("authorization", "")
        if not given:
            return _error(401, "This admin endpoint needs the header 'Authorization: Bearer <serve.admin_token>'.")
        if not hmac.compare_digest(given.removeprefix("Bearer ").strip(), state.admin_token):
            return _error(403, "Wrong admin token.")
        return None

    @app.post("/admin/reload")
    async def reload(request: Request) -> Any:
        if (refused := denied(request)) is not None:
            return refused
        ref = None
        body = await _read_body(request, serve.max_body_bytes)
        if body.strip():
            try:
                payload = parse_json(body, serve)
            except BadRequest as err:
                return _error(err.status, err.message)
            if not isinstance(payload, dict) or not isinstance(payload.get("ref", ""), str):
                return _error(422, "Expected {\"ref\": \"<version or alias>\"} or an empty body.")
            ref = payload.get("ref")
        from starlette.concurrency import run_in_threadpool

        try:
            version = await run_in_threadpool(watcher.check, ref, force=True)
        except RegistryError as err:  # the ref names no version
            return _error(404, str(err))
        except KeepfitError as err:  # the version would not load; the one serving stays
            return _error(500, str(err))
        return {"model_version": version, "ref": watcher.ref, "swaps": slot.swaps}

    @app.post("/admin/drain")
    async def drain(request: Request) -> Any:
        if (refused := denied(request)) is not None:
            return refused
        left = await batcher.drain()
        return {"drained": left == 0, "in_flight": left}

    @app.post("/admin/resume")
    async def resume(request: Request) -> Any:
        if (refused := denied(request)) is not None:
            return refused
        batcher.draining = False
        return {"ready": ready()}

    return app
