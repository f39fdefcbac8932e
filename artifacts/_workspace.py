"""A thread's workspace directory and the path checks that keep tools inside it."""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

from core.errors import ToolError, ToolRefusedError
from protocol import Refusal

_log = logging.getLogger(__name__)

_SESSION = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MAX_LISTED = 500
_HIDDEN = {".git", "__pycache__", ".pytest_cache"}


class Workspace:
    """The directory a session's tools work in; every path is checked to stay inside it."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).resolve()

    @classmethod
    def for_session(cls, root: Path, session: str) -> Workspace:
        """The workspace ``root/<session>``, created if missing.

        Raises:
            ToolError: ``session`` is not a plain directory name (``/``, ``..``, empty).
        """
        if not _SESSION.match(session) or session in {".", ".."}:
            msg = f"session {session!r} cannot name a workspace directory"
            raise ToolError(msg)
        path = Path(root) / session
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @property
    def root(self) -> Path:
        """The workspace directory (absolute, symlinks resolved)."""
        return self._root

    def resolve(self, relpath: str) -> Path:
        """The absolute path of ``relpath`` inside the workspace.

        Raises:
            ToolRefusedError: the path is empty (kind ``invalid_arguments``), or absolute,
                leaves the workspace through ``..``, or goes through a symlink that points
                outside (kind ``path_outside_workspace``).
        """
        if not relpath or not relpath.strip() or "\x00" in relpath:
            msg = "the path is empty: give a path relative to the workspace, e.g. 'main.py'"
            raise ToolRefusedError(msg, kind=Refusal.INVALID_ARGUMENTS)
        pure = PurePosixPath(relpath.replace("\\", "/"))
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", relpath):
            msg = (f"absolute paths are not allowed ({relpath!r}): use a path relative to the "
                   "workspace, e.g. 'src/main.py'")
            raise ToolRefusedError(msg, kind=Refusal.PATH_OUTSIDE_WORKSPACE)
        resolved = (self._root / pure).resolve()
        if resolved == self._root or resolved.is_relative_to(self._root):
            return resolved
        if ".." in pure.parts:
            msg = f"{relpath!r} leaves the workspace through '..': stay inside the workspace"
        else:
            msg = f"{relpath!r} goes through a symlink that points outside the workspace"
        raise ToolRefusedError(msg, kind=Refusal.PATH_OUTSIDE_WORKSPACE)

    def relative(self, path: Path) -> str:
        """``path`` (inside the workspace) relative to its root, with ``/`` separators."""
        return path.relative_to(self._root).as_posix() or "."

    def list(self, relpath: str = ".") -> list[str]:
        """Files and directories (``name/``) under ``relpath``, recursively, sorted.

        At most 500 entries; ``.git``, ``__pycache__`` and ``.pytest_cache`` are skipped.

        Raises:
            ToolError: the path is refused (see ``resolve``) or is not a directory.
        """
        base = self.resolve(relpath)
        if not base.is_dir():
            msg = f"{relpath!r} is not a directory in the workspace"
            raise ToolError(msg)
        entries: list[str] = []
        for path in sorted(base.rglob("*")):
            if any(part in _HIDDEN for part in path.relative_to(base).parts):
                continue
            entries.append(self.relative(path) + ("/" if path.is_dir() else ""))
            if len(entries) >= _MAX_LISTED:
                entries.append(f"... (listing stops at {_MAX_LISTED} entries)")
                break
        return entries
