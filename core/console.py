"""Lines the command line prints: ``say`` to stdout, ``warn`` to stderr, each flushed at once
(a long-running command's output reaches a pipe or a log as it happens)."""

from __future__ import annotations

import os
import sys


def say(text: str) -> None:
    """Print ``text`` and a newline to stdout; a reader that stopped early (``| head``) is no
    error."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's advice (signal docs, "Note on SIGPIPE"): no second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def warn(text: str) -> None:
    """Print ``text`` and a newline to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
