"""Logging set-up for the entry points (the CLI and ``semsearch serve``); library code never
calls anything here, it only does ``logging.getLogger(__name__)``.

Two rules keep a user's terminal quiet unless they ask for more:

* semsearch's own loggers follow ``log.level`` (default WARNING);
* other libraries' records (bm25s sets its logger to DEBUG on import, onnxruntime's
  quantizer and torch's ONNX exporter warn) and Python ``warnings`` (routed to logging) are
  shown only at ``log.libraries`` and above (default ERROR), or all of them when
  ``log.level`` is DEBUG.

The filtering is done by the handler, not by logger levels, because a library may reset its
own logger's level when it is imported, after this ran.

``log.format = "json"`` writes one JSON object per line; every record logged while a request
is handled carries its ``request_id`` (a context variable the API middleware sets).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

#: the id of the API request being handled in this context (None outside requests)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("semsearch_request_id", default=None)

_OURS = ("semsearch", "uvicorn", "__main__")


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the API request being handled, if any) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


class _LevelFilter(logging.Filter):
    def __init__(self, level: int, libraries: int) -> None:
        super().__init__()
        self.level = level
        self.libraries = libraries

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.startswith(_OURS)
        return record.levelno >= (self.level if ours else max(self.level, self.libraries))


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ``{"time", "level", "logger", "message", "request_id"?}``;
    access log entries (already JSON objects) are merged in rather than quoted."""

    def format(self, record: logging.LogRecord) -> str:
        base: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                                "level": record.levelname, "logger": record.name}
        rid = getattr(record, "request_id", None)
        if rid is not None:
            base["request_id"] = rid
        msg = record.getMessage()
        if record.name == "semsearch.access":
            try:
                return json.dumps({**base, **json.loads(msg)})
            except json.JSONDecodeError:
                pass
        base["message"] = msg
        if record.exc_info:
            base["exc"] = self.formatException(record.exc_info)
        return json.dumps(base)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request_id={rid}]" if rid is not None and record.name != "semsearch.access" else line


def level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    n = logging.getLevelName(level.upper())
    if not isinstance(n, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR")
    return n


def configure(level: str | int = "WARNING", *, fmt: str = "text", libraries: str | int = "ERROR",
              access: bool = False) -> None:
    """Send every log record and Python warning to stderr through one filtered handler.
    ``access`` turns the per-request access log (``semsearch.access``, INFO) on."""
    lvl, lib = level_number(level), level_number(libraries)
    if lvl <= logging.DEBUG:
        lib = logging.DEBUG  # the user asked for everything
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(_LevelFilter(lvl, lib))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    logging.getLogger("semsearch").setLevel(lvl)
    if access:
        logging.getLogger("semsearch.access").setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)  # warnings.warn -> logger "py.warnings" (a library's)
