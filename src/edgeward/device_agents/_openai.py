"""The OpenAI wire format: request parsing and validation, response and chunk shapes, errors.

Requests are checked field by field and refused with OpenAI's error shape naming the
``param``; parameters that would change the result but are not supported (``n > 1``,
``logprobs``, ``tools`` ...) are refused rather than silently ignored. Streamed chunks are
built from bytes prepared once per response, so each token costs one ``json.dumps`` of its
text.

Beside OpenAI's fields (unchanged), every chat and completion response, and the last chunk of a
stream (the one with ``finish_reason``), carries ``edgeward: {"prompt_redacted": bool,
"redacted_types": [...]}``: whether the safety filter redacted the prompt before the model saw
it, and the PII types it replaced (types only, never values). In a stream it rides with the
end of the generation, beside ``safety``, so the text chunks stay as they are; a stream whose
prompt was blocked is that one chunk.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgeward.device_agents._generate import Outcome, Prompt
from edgeward.errors import ConfigError
from edgeward.runtimes import ChatMessage, Embeddings, GenerationStats, SamplingParams
from edgeward.safety import Stage, Verdict

__all__ = ["DONE", "RANGES", "ApiError", "ChunkWriter", "EmbeddingRequest", "GenerationRequest",
           "Range", "embeddings_response", "error_body", "parse_chat", "parse_completion",
           "parse_embeddings"]

DONE = b"data: [DONE]\n\n"
Kind = Literal["chat", "completion"]
_ROLES = {"system", "user", "assistant", "developer"}
# Refused when present and not at their neutral value: silently ignoring them would change
# what the client asked for.
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False, 0), "top_logprobs": (None, 0), "tools": (None, []),
    "functions": (None, []), "tool_choice": (None, "none"), "echo": (None, False),
    "suffix": (None, ""), "best_of": (None, 1), "logit_bias": (None, {}),
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "n": (None, 1),
    "dimensions": (None,),
}


class ApiError(Exception):
    """A request answered with an error in OpenAI's shape (``{"error": {...}}``).

    Attributes:
        status: the HTTP status.
        message, type, param, code: the error object's fields.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _bad(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class GenerationRequest:
    """A parsed chat or completion request."""

    kind: Kind
    prompt: Prompt
    params: SamplingParams
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class EmbeddingRequest:
    """A parsed embeddings request."""

    texts: tuple[str, ...]
    encoding_format: Literal["float", "base64"]


@dataclass(frozen=True)
class Range:
    """The accepted values of one numeric request field (docs/agent.md lists them).

    Attributes:
        integer: only integers (``true``/``false`` never count as numbers).
        low, high: the bounds; ``open_low``/``open_high`` exclude them.
    """

    integer: bool
    low: float
    high: float
    open_low: bool = False
    open_high: bool = False

    def __str__(self) -> str:
        def show(v: float) -> str:
            return f"{v:g}" if not self.integer or abs(v) < 1e6 else f"{int(v):,}"
        return (f"{'(' if self.open_low else '['}{show(self.low)}, {show(self.high)}"
                f"{')' if self.open_high else ']'}")

    def admits(self, value: float) -> bool:
        """Whether ``value`` is within the bounds."""
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below


_INT32 = 2**31 - 1
# Every numeric field a request may carry. max_tokens above the agent's max_tokens_cap is
# lowered to it (documented); outside these ranges it is a 400 naming the field and range.
RANGES: dict[str, Range] = {
    "max_tokens": Range(True, 1, _INT32), "max_completion_tokens": Range(True, 1, _INT32),
    "temperature": Range(False, 0.0, 10.0), "top_p": Range(False, 0.0, 1.0, open_low=True),
    "top_k": Range(True, 0, 2**20), "min_p": Range(False, 0.0, 1.0, open_high=True),
    "repeat_penalty": Range(False, 0.0, 10.0, open_low=True),
    "seed": Range(True, -(2**63), 2**63 - 1),  # OpenAI's int64; taken modulo 2**32
    "n": Range(True, 1, 128),
    "presence_penalty": Range(False, -2.0, 2.0), "frequency_penalty": Range(False, -2.0, 2.0),
    "top_logprobs": Range(True, 0, 20), "best_of": Range(True, 1, 20),
}
_MAX_STOPS, _MAX_STOP_CHARS = 16, 1024


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    """``value`` equals one of ``neutral`` and is of its kind (``true`` is not ``1``)."""
    for n in neutral:
        if n is None or isinstance(n, bool):
            if value is n:
                return True
        elif isinstance(value, bool):
            continue
        elif isinstance(n, int | float):
            if isinstance(value, int | float) and value == n:
                return True
        elif type(value) is type(n) and value == n:
            return True
    return False


def _check_unsupported(body: Mapping[str, Any]) -> None:
    for name, neutral in _UNSUPPORTED.items():
        if name not in body:
            continue
        if name in RANGES:
            _numeric(body, name)  # the type and range first, then whether it is supported
        if not _is_neutral(body[name], neutral):
            raise _bad(name, f"{name!r} = {_short(body[name])} is not supported by this agent",
                       "unsupported_parameter")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _numeric(body: Mapping[str, Any], name: str) -> float | int | None:
    """The field ``name`` if present and within :data:`RANGES`; ``None`` when absent."""
    value = body.get(name)
    if value is None:
        return None
    rng = RANGES[name]
    kind = int if rng.integer else int | float
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _bad(name, f"{name!r} must be {'an integer' if rng.integer else 'a number'} in "
                   f"{rng}, not {_short(value)}")
    if not rng.admits(value):
        raise _bad(name, f"{name!r} must be in {rng}, not {_short(value)}")
    return value


def _stops(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else stop
    if stops is None:
        return ()
    if not isinstance(stops, list) or len(stops) > _MAX_STOPS or not all(
            isinstance(s, str) and 0 < len(s) <= _MAX_STOP_CHARS for s in stops):
        raise _bad("stop", f"'stop' must be a non-empty string or a list of up to "
                   f"{_MAX_STOPS}, each of 1..{_MAX_STOP_CHARS} characters, not {_short(stop)}")
    return tuple(stops)


def _sampling(body: Mapping[str, Any], *, default_max_tokens: int, cap: int) -> SamplingParams:
    _check_unsupported(body)
    max_name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = _numeric(body, max_name)
    kwargs: dict[str, Any] = {"max_tokens": min(int(max_tokens or default_max_tokens), cap),
                              "stop": _stops(body)}
    for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
        value = _numeric(body, name)
        if value is not None:
            kwargs[name] = float(value)
    top_k, seed = _numeric(body, "top_k"), _numeric(body, "seed")
    if top_k is not None:
        kwargs["top_k"] = int(top_k)
    if seed is not None:
        kwargs["seed"] = int(seed) % 2**32
    try:
        return SamplingParams(**kwargs)
    except ConfigError as e:
        raise _bad(str(e).split("'")[1] if "'" in str(e) else "", str(e)) from e


def _flag(mapping: Mapping[str, Any], name: str, param: str) -> bool:
    value = mapping.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(param, f"{param!r} must be true or false, not {_short(value)}")
    return value


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = _flag(body, "stream", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise _bad("stream_options", "'stream_options' must be an object")
    return stream, _flag(options, "include_usage", "stream_options.include_usage")


def _content(i: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(
                    part.get("text"), str):
                raise _bad(f"messages[{i}].content", "only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise _bad(f"messages[{i}].content", f"message {i} needs string content, not "
               f"{_short(content)}")


def parse_chat(body: Mapping[str, Any], *, default_max_tokens: int, cap: int) -> GenerationRequest:
    """Parse a ``/v1/chat/completions`` body.

    Raises:
        ApiError: 400, naming the bad parameter.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty list", "missing_required_parameter"
                   if messages is None else "invalid_value")
    parsed: list[ChatMessage] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}]", f"message {i} must be an object")
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(f"messages[{i}].role", f"message {i} has role {_short(role)}; "
                       f"supported: {', '.join(sorted(_ROLES))}")
        msg = ChatMessage(role="system" if role == "developer" else role,
                          content=_content(i, m.get("content")))
        name = m.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise _bad(f"messages[{i}].name", f"message {i} has a name that is not a "
                           f"string: {_short(name)}")
            msg["name"] = name
        parsed.append(msg)
    stream, usage = _stream_flags(body)
    if body.get("response_format") not in (None, {"type": "text"}):
        raise _bad("response_format", "only {'type': 'text'} is supported",
                   "unsupported_parameter")
    params = _sampling(body, default_max_tokens=default_max_tokens, cap=cap)
    return GenerationRequest("chat", Prompt(messages=tuple(parsed)), params, stream, usage)


def parse_completion(body: Mapping[str, Any], *, default_max_tokens: int,
                     cap: int) -> GenerationRequest:
    """Parse a ``/v1/completions`` body (one prompt: a string or a list of one string).

    Raises:
        ApiError: 400, naming the bad parameter.
    """
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("prompt", "'prompt' must be one string (batches and token arrays are not "
                   "supported)", "missing_required_parameter" if prompt is None else
                   "invalid_value")
    stream, usage = _stream_flags(body)
    params = _sampling(body, default_max_tokens=default_max_tokens, cap=cap)
    return GenerationRequest("completion", Prompt(text=prompt), params, stream, usage)


def parse_embeddings(body: Mapping[str, Any]) -> EmbeddingRequest:
    """Parse a ``/v1/embeddings`` body.

    Raises:
        ApiError: 400, naming the bad parameter.
    """
    _check_unsupported({k: v for k, v in body.items() if k == "dimensions"})
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(
            isinstance(t, str) and t for t in texts):
        raise _bad("input", "'input' must be a non-empty string or a list of non-empty strings "
                   "(token arrays are not supported)")
    fmt = body.get("encoding_format")
    if fmt is None:
        fmt = "float"
    if not isinstance(fmt, str) or fmt not in ("float", "base64"):
        raise _bad("encoding_format", f"'encoding_format' must be 'float' or 'base64', not "
                   f"{_short(fmt)}")
    return EmbeddingRequest(tuple(texts), "base64" if fmt == "base64" else "float")


def _usage(stats: GenerationStats | None) -> dict[str, int]:
    p = stats.prompt_tokens if stats else 0
    c = stats.completion_tokens if stats else 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _safety(stage: Stage, verdict: Verdict) -> dict[str, Any]:
    return {"stage": stage, "action": verdict.action, "categories": list(verdict.categories)}


def _edgeward(redacted_types: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``edgeward`` extension: was the prompt redacted before the model saw it, and
    which PII types (never the values)."""
    return {"prompt_redacted": bool(redacted_types), "redacted_types": list(redacted_types)}


class ChunkWriter:
    """The JSON objects and SSE chunks of one response (ids and prefixes made once)."""

    def __init__(self, kind: Kind, model: str) -> None:
        self.kind = kind
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        self.model = model
        self.created = int(time.time())
        self._object = "chat.completion.chunk" if kind == "chat" else "text_completion"
        head = (f'data: {{"id":"{self.id}","object":"{self._object}","created":{self.created},'
                f'"model":{json.dumps(model)},"choices":[{{"index":0,')
        if kind == "chat":
            self._pre = (head + '"delta":{"content":').encode()
            self._post = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self._pre = (head + '"text":').encode()
            self._post = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def text_chunk(self, text: str) -> bytes:
        """One SSE chunk carrying ``text``."""
        return self._pre + json.dumps(text).encode() + self._post

    def start_chunk(self) -> bytes:
        """The first chunk of a chat stream (the assistant role); empty for completions."""
        if self.kind != "chat":
            return b""
        return self._sse(self._choice({"role": "assistant", "content": ""}, None))

    def _choice(self, delta_or_text: Any, finish: str | None, **extra: Any) -> dict[str, Any]:
        key = "delta" if self.kind == "chat" else "text"
        return {"index": 0, key: delta_or_text, "logprobs": None, "finish_reason": finish,
                **extra}

    def _sse(self, choice: dict[str, Any] | None, **extra: Any) -> bytes:
        obj = {"id": self.id, "object": self._object, "created": self.created,
               "model": self.model, "choices": [choice] if choice else [], **extra}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    def end_chunks(self, outcome: Outcome, include_usage: bool) -> bytes:
        """The final chunk (finish reason; the safety verdict when it stopped the output),
        the usage chunk when asked for, and ``[DONE]``."""
        extra = {}
        if outcome.verdict is not None:
            extra["safety"] = _safety("output", outcome.verdict)
        empty: Any = {} if self.kind == "chat" else ""
        out = self._sse(self._choice(empty, outcome.finish_reason), **extra,
                        edgeward=_edgeward(outcome.prompt_redacted_types))
        if include_usage:
            out += self._sse(None, usage=_usage(outcome.stats))
        return out + DONE

    def refusal_chunks(self, verdict: Verdict, text: str, include_usage: bool) -> bytes:
        """A whole stream for a blocked prompt: the refusal, ``content_filter``, ``[DONE]``."""
        if self.kind == "chat":
            first = self._choice({"role": "assistant", "content": None, "refusal": text},
                                 "content_filter")
        else:
            first = self._choice("", "content_filter", refusal=text)
        out = self._sse(first, safety=_safety("prompt", verdict), edgeward=_edgeward())
        if include_usage:
            out += self._sse(None, usage=_usage(None))
        return out + DONE

    @staticmethod
    def error_chunk(error: ApiError) -> bytes:
        """An error event inside a stream (the OpenAI client raises it as an APIError)."""
        return b"data: " + json.dumps(error.body()).encode() + b"\n\n"

    def response(self, text: str, outcome: Outcome) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        obj: dict[str, Any] = {"id": self.id, "created": self.created, "model": self.model}
        if self.kind == "chat":
            message = {"role": "assistant", "content": text, "refusal": None}
            obj |= {"object": "chat.completion", "choices": [
                {"index": 0, "message": message, "logprobs": None,
                 "finish_reason": outcome.finish_reason}]}
        else:
            obj |= {"object": "text_completion", "choices": [
                {"index": 0, "text": text, "logprobs": None,
                 "finish_reason": outcome.finish_reason}]}
        obj["usage"] = _usage(outcome.stats)
        if outcome.verdict is not None:
            obj["safety"] = _safety("output", outcome.verdict)
        obj["edgeward"] = _edgeward(outcome.prompt_redacted_types)
        return obj

    def refusal(self, verdict: Verdict, text: str) -> dict[str, Any]:
        """The (non-streamed) response to a blocked prompt; ``text`` is the refusal."""
        obj: dict[str, Any] = {"id": self.id, "created": self.created, "model": self.model}
        if self.kind == "chat":
            obj |= {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": None, "refusal": text},
                 "logprobs": None, "finish_reason": "content_filter"}]}
        else:
            obj |= {"object": "text_completion", "choices": [
                {"index": 0, "text": "", "refusal": text, "logprobs": None,
                 "finish_reason": "content_filter"}]}
        return obj | {"usage": _usage(None), "safety": _safety("prompt", verdict),
                      "edgeward": _edgeward()}


def embeddings_response(emb: Embeddings, model: str,
                        encoding_format: Literal["float", "base64"]) -> dict[str, Any]:
    """The ``/v1/embeddings`` response (base64: little-endian float32, as OpenAI sends)."""
    data = []
    for i, vector in enumerate(emb.vectors):
        value: Any = vector
        if encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": emb.prompt_tokens, "total_tokens": emb.prompt_tokens}}
