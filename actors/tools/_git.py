"""A git repository in a session's workspace: one branch per run, a commit per turn, merge or
delete at the end (docs/design.md#the-agentic-loop).

git runs without a shell, with a timeout, a clean environment and no user or system
configuration (identity and defaults are passed with ``-c``). The repository belongs to the
model as much as to us (its commands can write ``.git``), so hooks, fsmonitor and external
diff tools are switched off, and git runs in the same sandbox as the model's commands (without
network, ``_sandbox``): a filter, merge driver or alias planted in ``.git/config`` runs no more
privileged than the model's own commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
from typing import NamedTuple

from actors.tools._command import command_env, spawn
from artifacts import Workspace
from core.config import ToolPolicy
from core.errors import GitError, ToolRefusedError

_log = logging.getLogger(__name__)

MAIN = "main"
GIT_TIMEOUT_S = 30.0
"""Bound of one git command, seconds."""
BRANCH_PREFIX = "switchboard/"
_CONFIG = (
    "-c", "user.name=Switchboard", "-c", "user.email=switchboard@localhost",
    "-c", f"init.defaultBranch={MAIN}", "-c", "commit.gpgsign=false",
    "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
    "-c", "core.quotePath=false", "-c", "advice.detachedHead=false",
    "-c", "safe.directory=*",
)
_EXCLUDES = "__pycache__/\n.pytest_cache/\n*.pyc\n.sb-restore-*\n"
_KILL_WAIT_S = 5.0
# git check-ref-format rules (git-check-ref-format(1)), for a branch under refs/heads/.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")
_SHORT_ID = re.compile(r"[^A-Za-z0-9_-]+")


class _Result(NamedTuple):
    code: int
    out: str
    err: str


def check_branch_name(name: str) -> str:
    """Return ``name`` when git accepts it as a branch (git check-ref-format rules).

    Raises:
        GitError: empty, over 200 characters, ``-`` first, a component starting with ``.`` or
            ending in ``.lock``, ``..``, ``@{``, ``//``, control characters, spaces, ``~ ^ : ?
            * [ \\``, a trailing ``/`` or ``.``, or ``@`` alone.
    """
    parts = name.split("/")
    bad = (not name or len(name) > 200 or name.startswith("-") or name == "@"
           or name.endswith(("/", ".")) or _REF_FORBIDDEN.search(name) is not None
           or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts))
    if bad:
        msg = f"invalid branch name {name!r} (git check-ref-format rules)"
        raise GitError(msg)
    return name


def branch_name(session: str, run_id: str) -> str:
    """The branch of one run: ``switchboard/<session>-<first 8 characters of run_id>``.

    Raises:
        GitError: the result is not a valid branch name.
    """
    short = _SHORT_ID.sub("", run_id)[:8] or "run"
    return check_branch_name(f"{BRANCH_PREFIX}{session}-{short}")


def _failed(args: tuple[str, ...], result: _Result) -> GitError:
    """The error of a git command that exited non-zero: its last lines of output."""
    detail = (result.err.strip() or result.out.strip()).splitlines()
    msg = f"git {' '.join(args[:2])} failed: {' '.join(detail[-3:]) or result.code}"
    return GitError(msg)


class GitRepo:
    """The repository at the root of a workspace."""

    def __init__(self, workspace: Workspace, *, timeout_s: float = GIT_TIMEOUT_S,
                 policy: ToolPolicy | None = None) -> None:
        self.workspace = workspace
        self.timeout_s = timeout_s
        self.policy = policy or ToolPolicy()
        """Whose ``sandbox`` and bounds git runs under (always without network)."""

    async def _git(self, *args: str, check: bool = True) -> _Result:
        """Run ``git <args>`` in the workspace.

        Raises:
            GitError: git timed out, or exited non-zero while ``check``.
        """
        env = {**command_env(self.workspace), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        git = shutil.which("git", path=env["PATH"]) or "git"
        try:
            started = await spawn(self.workspace, [git, *_CONFIG, *args], self.policy,
                                  network=False, env=env, merge_stderr=False)
        except ToolRefusedError as exc:
            msg = f"git {args[0]} cannot run: {exc}"
            raise GitError(msg) from exc
        process = started.process
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await process.communicate()
        except TimeoutError as exc:
            msg = f"git {args[0]} did not finish within {self.timeout_s:g} s"
            raise GitError(msg) from exc
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), _KILL_WAIT_S)
            await started.finish()
        result = _Result(process.returncode or 0, out.decode(errors="replace"),
                         err.decode(errors="replace"))
        if check and result.code != 0:
            raise _failed(args, result)
        return result

    async def _head(self) -> str | None:
        """The checked-out branch ("" when HEAD is detached) when the workspace is the top of
        a repository of its own that has a commit, in one git call; None otherwise (no
        ``.git``, a directory inside an outer repository, no commit yet), when ``ensure``
        looks again the longer way."""
        if not (self.workspace.root / ".git").exists():
            return None
        result = await self._git("rev-parse", "--show-cdup", "--abbrev-ref", "HEAD",
                                 check=False)
        lines = result.out.split("\n")
        if result.code != 0 or len(lines) < 2 or lines[0].strip():
            return None
        name = lines[1].strip()
        return "" if name == "HEAD" else name

    async def _has_repo(self) -> bool:
        if not (self.workspace.root / ".git").exists():
            return False
        # ``--show-cdup`` is empty at the top of a repository ("../" inside an outer one).
        result = await self._git("rev-parse", "--show-cdup", check=False)
        return result.code == 0 and not result.out.strip()

    async def _branch_exists(self, branch: str) -> bool:
        result = await self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}",
                                 check=False)
        return result.code == 0

    async def ensure(self, branch: str) -> None:
        """Make sure the repository exists and ``branch`` is checked out.

        A missing repository is created with a ``main`` branch holding one empty commit; a
        missing ``branch`` is created from ``main``. Uncommitted changes are carried over to
        the branch (they belong to the run).

        Raises:
            GitError: the name is invalid, or git fails (for example a checkout that would
                overwrite uncommitted changes).
        """
        check_branch_name(branch)
        current = await self._head()  # a run's usual case: one git call, and done
        if current is None:
            if not await self._has_repo():
                await self._git("init", "--quiet", f"--initial-branch={MAIN}")
                exclude = self.workspace.root / ".git" / "info" / "exclude"
                exclude.parent.mkdir(parents=True, exist_ok=True)
                exclude.write_text(_EXCLUDES, encoding="utf-8")
                await self._git("commit", "--quiet", "--allow-empty", "-m",
                                "Start the workspace")
                _log.info("created a git repository in %s", self.workspace.root)
            current = await self.current_branch()
        if current == branch:
            return
        if await self._branch_exists(branch):
            await self._git("checkout", "--quiet", branch)
        else:
            await self._git("checkout", "--quiet", "-b", branch, MAIN)

    async def current_branch(self) -> str:
        """The checked-out branch (empty when HEAD is detached).

        Raises:
            GitError: there is no repository.
        """
        result = await self._git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        if result.code == 0:
            return result.out.strip()
        await self._git("rev-parse", "HEAD")  # raises when there is no repository at all
        return ""

    async def commit_all(self, message: str) -> str | None:
        """Commit every change in the workspace (new, changed and deleted files).

        Returns:
            The new commit's sha (40 hex digits), or None when nothing changed.

        Raises:
            GitError: the message is empty, or git fails.
        """
        if not message.strip():
            msg = "a commit needs a message"
            raise GitError(msg)
        await self._git("add", "--all")
        args = ("commit", "--quiet", "--no-verify", "-m", message)
        committed = await self._git(*args, check=False)
        if committed.code != 0:  # nothing staged, or a failure: the index says which
            staged = await self._git("diff", "--cached", "--quiet", check=False)
            if staged.code == 0:
                return None
            raise _failed(args, committed)
        return (await self._git("rev-parse", "HEAD")).out.strip()

    async def changed_files(self, since: str = MAIN) -> list[str]:
        """Files changed by the commits of the current branch since it left ``since``
        (``git diff since...HEAD``), sorted; uncommitted changes are not included."""
        result = await self._git("diff", "--name-only", "--no-renames", "--no-ext-diff",
                                 "--no-textconv", f"{since}...HEAD", "--")
        return sorted(line for line in result.out.splitlines() if line)

    async def _dirty(self) -> bool:
        result = await self._git("status", "--porcelain", "--untracked-files=all")
        return bool(result.out.strip())

    async def merge(self, branch: str) -> str:
        """Merge ``branch`` into ``main`` with a merge commit (``--no-ff``: the thread's work
        stays one visible unit in main's history) and leave ``main`` checked out.

        Returns:
            The sha of the merge commit on ``main``.

        Raises:
            GitError: the branch is missing, the workspace has uncommitted changes, or the
                merge conflicts. On a conflict the merge is aborted and the branch that was
                checked out before is checked out again: the repository is left clean.
        """
        check_branch_name(branch)
        if not await self._branch_exists(branch):
            msg = f"there is no branch {branch!r} to merge"
            raise GitError(msg)
        if await self._dirty():
            msg = "the workspace has uncommitted changes: commit them before merging"
            raise GitError(msg)
        before = await self.current_branch() or MAIN
        await self._git("checkout", "--quiet", MAIN)
        result = await self._git("merge", "--no-ff", "--no-edit", "--no-verify",
                                 "-m", f"Merge {branch}", branch, check=False)
        if result.code != 0:
            conflicts = await self._git("diff", "--name-only", "--diff-filter=U", check=False)
            await self._git("merge", "--abort", check=False)
            await self._git("reset", "--quiet", "--hard", "HEAD")
            await self._git("checkout", "--quiet", before)
            files = ", ".join(conflicts.out.split()) or "(see git status)"
            msg = f"merging {branch} into {MAIN} conflicts in: {files}; nothing was merged"
            raise GitError(msg)
        return (await self._git("rev-parse", "HEAD")).out.strip()

    async def delete_branch(self, branch: str) -> None:
        """Delete ``branch`` even when unmerged (👎 discards the run's work); ``main`` is
        checked out first when it is the current branch.

        Raises:
            GitError: the branch is ``main``, is missing, or git fails.
        """
        check_branch_name(branch)
        if branch == MAIN:
            msg = f"the {MAIN} branch cannot be deleted"
            raise GitError(msg)
        if not await self._branch_exists(branch):
            msg = f"there is no branch {branch!r} to delete"
            raise GitError(msg)
        if await self.current_branch() == branch:
            await self._git("checkout", "--quiet", "--force", MAIN)
            await self._git("clean", "-fdq")
        await self._git("branch", "--quiet", "-D", branch)
