"""Logging set-up for every Switchboard process: one line per record, naming the process."""

from __future__ import annotations

import json
import logging
import sys
import time

_QUIET = ("LiteLLM", "litellm", "httpx", "httpcore", "discord", "nats", "asyncio", "openai")


class _JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": round(record.created, 3), "level": record.levelname, "logger": record.name,
            "process": self._process, "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(process: str, *, level: str = "INFO", as_json: bool = False) -> None:
    """Log to stderr, each line tagged with ``process`` (``classifier/0``, ``supervisor``).

    Libraries' chatty loggers (litellm, httpx, discord, nats) are held at WARNING.
    """
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter(process))
    else:
        formatter = logging.Formatter(
            f"%(asctime)s.%(msecs)03d %(levelname)-7s [{process}] %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
