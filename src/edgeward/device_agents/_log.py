"""Structured logging: one line per event, ``key=value`` (logfmt) or JSON.

Every event the agent logs has a stable ``event`` name (``artifact_refused``, ``model_loaded``,
``reload_refused``, ``safety_block``, ``request``, ``shutdown_started`` ...) and flat fields,
so a refusal is one greppable line that says what was refused and why. Prompt and output
text are never logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from edgeward.device_agents._config import LogFormat

__all__ = ["LOGGER", "configure_logging", "log_event"]

LOGGER = logging.getLogger("edgeward.agent")
_HANDLER_MARK = "_edgeward_agent_handler"


def log_event(level: int, event: str, /, **fields: Any) -> None:
    """Log one structured event.

    Args:
        level: a :mod:`logging` level.
        event: the event's stable name.
        **fields: flat values (str, int, float, bool, None).
    """
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, event, extra={"edgeward_event": event, "edgeward_fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
    }
    event = getattr(record, "edgeward_event", None)
    if event is not None:
        out["event"] = event
        out.update(getattr(record, "edgeward_fields", {}))
    else:
        out["logger"] = record.name
        out["msg"] = record.getMessage()
    return out


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """``time=... level=... event=... key=value ...``, values quoted when they need it."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a logfmt line."""
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        if record.exc_info:
            line += " exc=" + _logfmt_value(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a JSON line."""
        fields = _fields(record)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False, default=str)


def configure_logging(fmt: LogFormat = "logfmt", *, level: int = logging.INFO) -> None:
    """Send the agent's events (and Uvicorn's warnings) to stderr in ``fmt``.

    Idempotent: a second call replaces the handler the first one installed. Meant for the
    ``edgeward`` command; a program embedding the agent configures logging itself.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    LOGGER.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
