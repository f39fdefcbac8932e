"""``GET /v1/runs/{run_id}/files/{path}``: a file the run answered with (kept by the API when
its answer arrived), else the session's workspace file as the actors last stored it in the
artifact store (JetStream object store or S3; docs/design.md#workspaces-and-artifacts)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from api._records import RunRecord
from api._store import RunStore
from api.errors import BadPathError, NotFoundError, UnavailableError
from core.errors import ArtifactError, ArtifactNotFoundError

if TYPE_CHECKING:
    from artifacts import ArtifactStore

_log = logging.getLogger(__name__)

MAX_PATH_CHARS = 1000
_PART = re.compile(r"^[^\x00-\x1f\x7f\\]+$")

ArtifactOpener = Callable[[], Awaitable["ArtifactStore"]]
"""Opens the deployment's artifact store (``artifacts.open_artifact_store``)."""


def clean_path(path: str) -> str:
    """``path`` when it is a clean relative workspace path (``src/app.py``).

    Raises:
        BadPathError: empty, absolute, longer than 1,000 characters, with ``.`` / ``..`` /
            empty parts, backslashes or control characters.
    """
    parts = path.split("/")
    if (not path or len(path) > MAX_PATH_CHARS or PurePosixPath(path).is_absolute()
            or any(p in {"", ".", ".."} or not _PART.match(p) for p in parts)):
        msg = f"invalid file path {path[:100]!r}: use a relative path like 'src/app.py'"
        raise BadPathError(msg)
    return path


class RunFiles:
    """Reads a run's files (see the module docstring).

    Args:
        store: the API's buckets (the runs' own files).
        open_artifacts: opens the artifact store on first use (None: runs' own files only).
    """

    def __init__(self, store: RunStore, open_artifacts: ArtifactOpener | None = None) -> None:
        self.store = store
        self._open_artifacts = open_artifacts
        self._artifacts: ArtifactStore | None = None
        self._opening = asyncio.Lock()

    async def read(self, record: RunRecord, path: str) -> bytes:
        """The content of ``path`` for run ``record``.

        Raises:
            BadPathError: the path is not a clean relative path.
            NotFoundError: neither the run nor its session's stored workspace has it.
            StoreError, UnavailableError: a store did not answer.
        """
        path = clean_path(path)
        if path in record.files:
            data = await self.store.get_file(record.run_id, path)
            if data is not None:
                return data
        artifacts = await self._artifact_store()
        if artifacts is not None:
            try:
                return await artifacts.get(record.session, path)
            except ArtifactNotFoundError:
                pass
            except ArtifactError as exc:
                msg = f"the artifact store did not answer: {exc}"
                raise UnavailableError(msg) from exc
        msg = f"run {record.run_id} has no file {path}"
        raise NotFoundError(msg)

    async def _artifact_store(self) -> ArtifactStore | None:
        if self._open_artifacts is None:
            return None
        async with self._opening:
            if self._artifacts is None:
                try:
                    self._artifacts = await self._open_artifacts()
                except ArtifactError as exc:
                    msg = f"the artifact store cannot be opened: {exc}"
                    raise UnavailableError(msg) from exc
        return self._artifacts

    async def close(self) -> None:
        """Close the artifact store when it was opened."""
        if self._artifacts is not None:
            await self._artifacts.close()
