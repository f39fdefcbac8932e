"""Mirror a workspace to the artifact store and back (docs/design.md#workspaces-and-artifacts).

What is synced: every regular file under the workspace root, the git repository included —
``.git`` is stored file by file (``<session>/.git/HEAD``, ``<session>/.git/objects/ab/cdef…``)
so a thread's branches and commits survive a move to another machine, and only the git objects
a turn created are uploaded again. Symlinks are never followed or stored; ``__pycache__`` and
``.pytest_cache`` are skipped; files over ``MAX_ARTIFACT_BYTES`` are skipped with a warning.
Empty directories are not stored: ``restore_workspace`` recreates the few that git needs.

Change detection is size + SHA-256 (the store keeps the digest in object metadata), so a sync
after a turn moves only what changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from artifacts._store import ArtifactInfo, ArtifactStore, check_session, sha256_hex
from artifacts._workspace import Workspace
from core.errors import ArtifactError, ToolError

_log = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 64 << 20
"""Largest file synced, bytes (64 MiB): bigger ones are build output, not work to keep."""
_SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache"})
_GIT_DIRS = (".git/objects", ".git/refs/heads", ".git/refs/tags")
_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync moved.

    Attributes:
        uploaded: files written to the store.
        downloaded: files written to the workspace.
        skipped: files left alone (same size and digest, newer on the destination side, or over
            ``MAX_ARTIFACT_BYTES``).
        bytes: bytes moved, either way.
        removed: stored objects deleted because the file is gone from the workspace.
    """

    uploaded: int = 0
    downloaded: int = 0
    skipped: int = 0
    bytes: int = 0
    removed: int = 0


@dataclass(frozen=True, slots=True)
class _Local:
    size: int
    sha256: str
    mtime_ns: int


def _scan(root: Path) -> tuple[dict[str, _Local], int]:
    """Every regular file under ``root`` (symlinks not followed): digest, size, mtime; and how
    many files were too large to sync."""
    files: dict[str, _Local] = {}
    too_large = 0
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for name in filenames:
            path = Path(directory) / name
            stat = path.lstat()
            if not path.is_file() or path.is_symlink():
                continue
            relative = path.relative_to(root).as_posix()
            if stat.st_size > MAX_ARTIFACT_BYTES:
                _log.warning("not syncing %s: %d bytes, over %d", relative, stat.st_size,
                             MAX_ARTIFACT_BYTES)
                too_large += 1
                continue
            files[relative] = _Local(stat.st_size, sha256_hex(path.read_bytes()),
                                     stat.st_mtime_ns)
    return files, too_large


def _session_of(workspace: Workspace, session: str | None) -> str:
    return check_session(session or workspace.root.name)


async def sync_to_store(store: ArtifactStore, workspace: Workspace, *,
                        session: str | None = None) -> SyncReport:
    """Upload the workspace's new and changed files; delete stored files it no longer has.

    Args:
        store: the artifact store.
        workspace: the session's workspace; its directory name is the session id unless
            ``session`` is given (``Workspace.for_session(root, session)`` makes them equal).
        session: the session id, when it differs from the directory name.

    Returns:
        The counts; ``skipped`` includes unchanged files and files over ``MAX_ARTIFACT_BYTES``.

    Raises:
        ArtifactError: the store failed or timed out (some files may be uploaded already; the
            next sync finishes the job).
    """
    session = _session_of(workspace, session)
    local, too_large = await asyncio.to_thread(_scan, workspace.root)
    stored = await store.stat(session)
    changed = [path for path, file in local.items()
               if (info := stored.get(path)) is None
               or (info.size, info.sha256) != (file.size, file.sha256)]
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def upload(path: str) -> int:
        async with limit:
            data = await asyncio.to_thread((workspace.root / path).read_bytes)
            await store.put(session, path, data, mtime_ns=local[path].mtime_ns)
            return len(data)

    sizes = await asyncio.gather(*(upload(path) for path in changed))
    gone = sorted(set(stored) - set(local))
    removed = 0
    for path in gone:
        if not (workspace.root / path).is_file():
            removed += await store.delete(session, path)
    report = SyncReport(uploaded=len(changed), skipped=len(local) - len(changed) + too_large,
                        bytes=sum(sizes), removed=removed)
    _log.info("synced workspace %s to the store: %s", session, report)
    return report


def _write(target: Path, data: bytes, mtime_ns: int) -> None:
    """Write ``data`` to ``target`` atomically (temp file + rename) with ``mtime_ns``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".sb-restore-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mtime_ns:
            os.utime(temp, ns=(mtime_ns, mtime_ns))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _wanted(info: ArtifactInfo, file: _Local | None) -> bool:
    """Download when the workspace lacks the file, or has other content that is older."""
    if file is None:
        return True
    if (file.size, file.sha256) == (info.size, info.sha256):
        return False
    return file.mtime_ns < info.mtime_ns


async def restore_workspace(store: ArtifactStore, workspace: Workspace, *,
                            session: str | None = None) -> SyncReport:
    """Download the stored files the workspace lacks or has in an older version.

    Files only in the workspace are left alone, as are files that are newer locally. Restored
    files get their original modification time. When a git repository was restored, the empty
    directories git expects (``.git/objects``, ``.git/refs/heads``, ``.git/refs/tags``) are
    created.

    Args:
        store: the artifact store.
        workspace: the destination (for example the same session on another machine).
        session: the session id, when it differs from the workspace's directory name.

    Raises:
        ArtifactError: the store failed, a download does not match its digest, or a file
            cannot be written.
    """
    session = _session_of(workspace, session)
    stored = await store.stat(session)
    local, _ = await asyncio.to_thread(_scan, workspace.root)
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def download(info: ArtifactInfo) -> int:
        try:
            target = workspace.resolve(info.path)
        except ToolError as exc:
            _log.warning("not restoring %s: %s", info.path, exc)
            return -1
        async with limit:
            data = await store.get(session, info.path)
        if info.sha256 and sha256_hex(data) != info.sha256:
            msg = f"artifact {info.path!r} of session {session} does not match its digest"
            raise ArtifactError(msg)
        try:
            await asyncio.to_thread(_write, target, data, info.mtime_ns)
        except OSError as exc:
            msg = f"cannot restore {info.path!r} into the workspace: {exc.strerror or exc}"
            raise ArtifactError(msg) from exc
        return len(data)

    wanted = [info for path, info in sorted(stored.items()) if _wanted(info, local.get(path))]
    sizes = [size for size in await asyncio.gather(*(download(info) for info in wanted))
             if size >= 0]
    if (workspace.root / ".git" / "HEAD").is_file():
        for directory in _GIT_DIRS:
            (workspace.root / directory).mkdir(parents=True, exist_ok=True)
    report = SyncReport(downloaded=len(sizes), skipped=len(stored) - len(sizes),
                        bytes=sum(sizes))
    _log.info("restored workspace %s from the store: %s", session, report)
    return report
