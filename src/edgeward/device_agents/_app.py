"""The HTTP API: a Starlette app with the OpenAI-compatible routes, health, metrics and reload.

Each generation request is parsed, checked (key, body size, capability) and admitted to the
engine's bounded queue; the handler then waits for the job's first event, so a refusal, an
error or a full queue still gets a proper status code, and streams the rest as server-sent
events. A client that goes away cancels its job (see :mod:`._engine`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeward.device_agents._engine import (
    Cancelled,
    Embedded,
    Event,
    Failed,
    Finished,
    Job,
    Pipe,
    Refused,
)
from edgeward.device_agents._log import log_event
from edgeward.device_agents._metrics import Metrics
from edgeward.device_agents._openai import (
    ApiError,
    ChunkWriter,
    GenerationRequest,
    embeddings_response,
    error_body,
    parse_chat,
    parse_completion,
    parse_embeddings,
)
from edgeward.errors import ConfigError, EdgewardError
from edgeward.safeio import parse_json

if TYPE_CHECKING:
    from edgeward.device_agents._agent import Agent

__all__ = ["build_app"]

T = TypeVar("T")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ENDPOINTS = {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
              "/healthz", "/metrics", "/admin/reload"}


def _api_error(e: EdgewardError | ApiError) -> ApiError:
    """The response for an error a job or a check raised."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, ConfigError):
        code = "context_length_exceeded" if "context holds" in str(e) else "invalid_value"
        return ApiError(400, str(e), code=code)
    return ApiError(500, f"the model failed: {e}", type="server_error", code=e.kind)


def _error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers or None)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``await work``, or ``None`` as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    return task.result() if task.done() and not task.cancelled() else None


async def _until_end(pipe: Pipe) -> list[Event]:
    events: list[Event] = []
    while True:
        batch = await pipe.get()
        events.extend(batch)
        if not isinstance(batch[-1], str):
            return events


class _Api:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    # -- checks ----------------------------------------------------------------------------

    def _auth(self, request: Request) -> None:
        key = self.agent.config.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 key.encode()):
            self._reject("unauthorized", request)
            raise ApiError(401, "Incorrect or missing API key; send 'Authorization: Bearer "
                           "KEY' with the api_key of the agent's config",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def _reject(self, reason: str, request: Request) -> None:
        self.agent.metrics.inc("edgeward_agent_rejected_total", reason=reason)
        log_event(logging.INFO, "request_rejected", reason=reason, path=request.url.path,
                  client=request.client.host if request.client else None)

    async def _json(self, request: Request) -> dict[str, Any]:
        limit = self.agent.config.max_body_bytes
        too_big = ApiError(413, f"the request body is larger than max_body_bytes ({limit} "
                           "bytes)", code="request_too_large", headers={"Connection": "close"})
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            self._reject("body_too_large", request)
            raise too_big
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    self._reject("body_too_large", request)
                    raise too_big
                chunks.append(chunk)
        except ClientDisconnect:  # gone (or cut off by the body deadline): nobody to answer
            raise ApiError(400, "the client went away before its request body arrived",
                           code="incomplete_body") from None
        try:  # depth and size limits, no lone surrogates, no NaN: a client's mistake is a 400
            body = parse_json(b"".join(chunks), what="request body", error=ConfigError)
        except ConfigError as e:
            raise ApiError(400, f"{e}; send one JSON object", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise ApiError(400, "'model' must be a string", param="model", code="invalid_value")
        return body

    def _admit(self, job: Job, request: Request) -> None:
        if self.agent.audit_closed:
            self._reject("audit_unavailable", request)
            raise ApiError(503, "the audit log cannot be written (the disk is full) and the "
                           "safety policy fails closed; free space on the disk, then reload "
                           "or restart the agent", type="server_error",
                           code="audit_unavailable")
        if self.agent.behaviour_stopped:
            self._reject("behaviour_drift", request)
            raise ApiError(503, "the model no longer behaves as its signed fingerprint says "
                           "([behaviour] on_drift = \"stop\"); check the device, then deploy or "
                           "reload a verified artifact", type="server_error",
                           code="behaviour_drift")
        engine = self.agent.engine
        admission = "closed" if self.agent.draining else engine.submit(job)
        if admission == "full":
            self._reject("queue_full", request)
            raise ApiError(429, f"the agent is busy: {engine.max_queue} requests are already "
                           "waiting (max_queue); retry after the Retry-After seconds",
                           type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(engine.retry_after_s())})
        if admission == "closed":
            self._reject("shutting_down", request)
            raise ApiError(503, "the agent is shutting down", type="server_error",
                           code="shutting_down", headers={"Connection": "close"})

    def _capable(self, need: str) -> str:
        info = self.agent.engine.model.info
        if need not in info.capabilities:
            raise ApiError(400, f"model {info.id!r} cannot {need} (it can: "
                           f"{', '.join(info.capabilities)})", param="model",
                           code="model_not_capable")
        return info.id

    # -- generation ------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._generation(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._generation(request, "completion")

    async def _generation(self, request: Request, kind: str) -> Response:
        self._auth(request)
        body = await self._json(request)
        cfg = self.agent.config
        parse = parse_chat if kind == "chat" else parse_completion
        req = parse(body, default_max_tokens=cfg.default_max_tokens, cap=cfg.max_tokens_cap)
        model_id = self._capable("chat" if kind == "chat" else "generate")
        writer = ChunkWriter(req.kind, model_id)
        job = Job(Pipe(asyncio.get_running_loop(), eager=req.stream), self.agent.safety_filter,
                  prompt=req.prompt, params=req.params,
                  context={"endpoint": kind, "request_id": writer.id, "model": model_id})
        self._admit(job, request)
        events = await _unless_disconnected(
            request, job.pipe.get() if req.stream else _until_end(job.pipe))
        if events is None:
            self.agent.engine.cancel(job)
            return Response(status_code=499)  # nginx's "client closed request"; never sent
        return self._respond(job, writer, req, events)

    def _respond(self, job: Job, writer: ChunkWriter, req: GenerationRequest,
                 events: list[Event]) -> Response:
        end = events[-1]
        if isinstance(end, Failed | Cancelled):
            return _error_response(self._end_error(end))
        if isinstance(end, Refused):
            if req.stream:
                return Response(writer.refusal_chunks(end.verdict, end.text, req.include_usage),
                                media_type="text/event-stream", headers=_SSE_HEADERS)
            return JSONResponse(writer.refusal(end.verdict, end.text))
        if req.stream:
            return _SSEResponse(self._sse(job, writer, events, req.include_usage), job,
                                self.agent, media_type="text/event-stream",
                                headers=_SSE_HEADERS)
        assert isinstance(end, Finished)
        text = "".join(e for e in events if isinstance(e, str))
        return JSONResponse(writer.response(text, end.outcome))

    @staticmethod
    def _end_error(end: Failed | Cancelled) -> ApiError:
        if isinstance(end, Failed):
            return _api_error(end.error)
        return ApiError(503, f"the request was cancelled: {end.reason.replace('_', ' ')}",
                        type="server_error", code=end.reason)

    async def _sse(self, job: Job, writer: ChunkWriter, events: list[Event],
                   include_usage: bool) -> AsyncIterator[bytes]:
        out = writer.start_chunk()
        while True:
            texts: list[str] = []
            end: Event | None = None
            for e in events:
                if isinstance(e, str):
                    texts.append(e)
                else:
                    end = e
            if texts:
                out += writer.text_chunk(texts[0] if len(texts) == 1 else "".join(texts))
            if end is not None:
                if isinstance(end, Finished):
                    out += writer.end_chunks(end.outcome, include_usage)
                elif isinstance(end, Failed | Cancelled):
                    out += writer.error_chunk(self._end_error(end))
                yield out
                return
            if out:
                yield out
                out = b""
            events = await job.pipe.get()

    # -- embeddings, models, health, metrics, reload ---------------------------------------

    async def embeddings(self, request: Request) -> Response:
        self._auth(request)
        req = parse_embeddings(await self._json(request))
        model_id = self._capable("embed")
        job = Job(Pipe(asyncio.get_running_loop(), eager=False), self.agent.safety_filter,
                  texts=req.texts, context={"endpoint": "embeddings", "model": model_id})
        self._admit(job, request)
        events = await _unless_disconnected(request, _until_end(job.pipe))
        if events is None:
            self.agent.engine.cancel(job)
            return Response(status_code=499)
        end = events[-1]
        if isinstance(end, Embedded):
            return JSONResponse(embeddings_response(end.embeddings, model_id,
                                                    req.encoding_format))
        assert isinstance(end, Failed | Cancelled)
        return _error_response(self._end_error(end))

    async def models(self, request: Request) -> Response:
        self._auth(request)
        info = self.agent.engine.model.info
        entry = {"id": info.id, "object": "model", "created": int(info.loaded_at),
                 "owned_by": "edgeward", "edgeward": info.to_dict()}
        return JSONResponse({"object": "list", "data": [entry]})

    async def healthz(self, request: Request) -> Response:
        agent = self.agent
        down = agent.draining or agent.audit_closed or agent.behaviour_stopped
        body = {"status": "shutting_down" if agent.draining else
                "audit_unavailable" if agent.audit_closed else
                "behaviour_drift" if agent.behaviour_stopped else "ok",
                "model": agent.engine.model.info.to_dict(),
                "behaviour": agent.behaviour.health() if agent.behaviour else None,
                "queue_depth": agent.engine.queue_depth, "max_queue": agent.engine.max_queue,
                "uptime_s": round(time.monotonic() - agent.started_at, 3)}
        return JSONResponse(body, status_code=503 if down else 200)

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(self.agent.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def reload(self, request: Request) -> Response:
        if self.agent.config.api_key is None:
            raise ApiError(403, "admin endpoints are off: set api_key in the agent's config "
                           "(SIGHUP also reloads)", type="permission_error",
                           code="admin_disabled")
        self._auth(request)
        result = await asyncio.to_thread(self.agent.reload)
        if result.ok:
            return JSONResponse(result.to_dict())
        status = 409 if result.error == "reload_in_progress" else 422
        body = error_body(result.detail, "reload_refused", None, result.error)
        return JSONResponse(body | {"model": result.model.to_dict()}, status_code=status)


class _SSEResponse(StreamingResponse):
    """A streamed response that always cancels its job when it ends (disconnect included)."""

    def __init__(self, content: AsyncIterator[bytes], job: Job, agent: Agent, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._job = job
        self._agent = agent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._agent.engine.cancel(self._job)


class _CountRequests:
    """Pure ASGI middleware: count each response by endpoint and status, and time it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_counted(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception as e:
            # Starlette re-raises after its handler answered 500 (and logged the traceback);
            # raised further, Uvicorn would log it a second time and close the connection.
            if started and status != 500:  # failed mid-response: not logged yet
                logging.getLogger("edgeward.agent").error(
                    "unexpected error in %s", scope["path"], exc_info=e)
        finally:
            path = scope["path"] if scope["path"] in _ENDPOINTS else "other"
            self.metrics.inc("edgeward_agent_requests_total", endpoint=path, code=str(status))
            self.metrics.observe("edgeward_agent_request_duration_seconds",
                                 time.perf_counter() - start, endpoint=path)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code,
                                                                       "invalid_request_error")
    message = (f"no such endpoint: {request.method} {request.url.path}"
               if exc.status_code in (404, 405) else str(exc.detail))
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return JSONResponse(error_body(message, kind, None, code), status_code=exc.status_code,
                        headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logging.getLogger("edgeward.agent").error("unexpected error in %s", request.url.path,
                                              exc_info=exc)
    return JSONResponse(error_body("internal error in the agent", "server_error", None,
                                   "internal_error"), status_code=500)


def build_app(agent: Agent) -> ASGIApp:
    """The agent's ASGI application."""
    api = _Api(agent)
    routes = [
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/embeddings", api.embeddings, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/admin/reload", api.reload, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        ApiError: _on_api_error, HTTPException: _on_http_error, Exception: _on_unexpected})
    return _CountRequests(app, agent.metrics)
