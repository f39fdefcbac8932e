"""Git in the workspace, with the real git: a branch per run, a commit per turn, merge, delete."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from actors.tools import GitRepo, branch_name, check_branch_name
from artifacts import Workspace
from core.errors import GitError

pytestmark = pytest.mark.timeout(60)

BRANCH = "switchboard/discord-1-abcd1234"


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                            check=True, timeout=30)
    return result.stdout.strip()


@pytest.fixture
async def repo(tmp_path: Path) -> GitRepo:
    workspace = Workspace.for_session(tmp_path / "workspaces", "discord-1")
    git = GitRepo(workspace)
    await git.ensure(BRANCH)
    return git


async def test_ensure_creates_main_and_the_branch(repo: GitRepo) -> None:
    root = repo.workspace.root
    assert await repo.current_branch() == BRANCH
    assert _git(root, "log", "--format=%s", "main") == "Start the workspace"
    await repo.ensure(BRANCH)  # idempotent
    await repo.ensure("switchboard/discord-1-second")
    assert await repo.current_branch() == "switchboard/discord-1-second"
    await repo.ensure(BRANCH)
    assert await repo.current_branch() == BRANCH


async def test_commit_per_change_and_nothing_to_commit(repo: GitRepo) -> None:
    root = repo.workspace.root
    assert await repo.commit_all("turn 1") is None
    (root / "app.py").write_text("print(1)\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"cache")
    first = await repo.commit_all("turn 1: add app.py")
    assert first is not None and len(first) == 40
    assert await repo.commit_all("turn 2") is None
    (root / "app.py").write_text("print(2)\n")
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("X = 1\n")
    second = await repo.commit_all("turn 3: change app, add util")
    assert second is not None and second != first
    assert _git(root, "rev-parse", "HEAD") == second
    assert await repo.changed_files() == ["app.py", "lib/util.py"]
    assert "__pycache__" not in _git(root, "ls-files")
    (root / "lib" / "util.py").unlink()
    assert await repo.commit_all("turn 4: remove util") is not None
    assert await repo.changed_files() == ["app.py"]


async def test_merge_puts_files_on_main(repo: GitRepo) -> None:
    root = repo.workspace.root
    (root / "feature.py").write_text("FEATURE = True\n")
    await repo.commit_all("add feature")
    merge = await repo.merge(BRANCH)
    assert await repo.current_branch() == "main"
    assert _git(root, "rev-parse", "main") == merge
    assert _git(root, "show", "main:feature.py") == "FEATURE = True"
    assert len(_git(root, "rev-list", "--parents", "-n", "1", "main").split()) == 3  # no-ff
    await repo.delete_branch(BRANCH)
    assert BRANCH not in _git(root, "branch", "--list")
    assert (root / "feature.py").is_file()


async def test_delete_branch_discards_its_work(repo: GitRepo) -> None:
    root = repo.workspace.root
    (root / "unwanted.py").write_text("x = 1\n")
    await repo.commit_all("unwanted")
    (root / "scratch.txt").write_text("uncommitted")
    await repo.delete_branch(BRANCH)
    assert await repo.current_branch() == "main"
    assert _git(root, "branch", "--list", BRANCH) == ""
    assert not (root / "unwanted.py").exists() and not (root / "scratch.txt").exists()
    with pytest.raises(GitError, match="no branch"):
        await repo.delete_branch(BRANCH)
    with pytest.raises(GitError, match="cannot be deleted"):
        await repo.delete_branch("main")


async def test_conflict_raises_and_leaves_the_repo_clean(repo: GitRepo) -> None:
    root = repo.workspace.root
    (root / "shared.txt").write_text("from the branch\n")
    await repo.commit_all("branch edit")
    other = "switchboard/discord-1-other"
    await repo.ensure(other)
    (root / "shared.txt").write_text("from another run\n")
    await repo.commit_all("other edit")
    await repo.merge(other)
    with pytest.raises(GitError, match=r"conflicts in: shared\.txt"):
        await repo.merge(BRANCH)
    assert _git(root, "status", "--porcelain") == ""
    assert not (root / ".git" / "MERGE_HEAD").exists()
    assert await repo.current_branch() == "main"
    assert (root / "shared.txt").read_text() == "from another run\n"


async def test_merge_refuses_uncommitted_changes(repo: GitRepo) -> None:
    (repo.workspace.root / "loose.txt").write_text("not committed")
    with pytest.raises(GitError, match="uncommitted"):
        await repo.merge(BRANCH)


@pytest.mark.parametrize("name", [
    "", "-x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "a@{1}", "a//b",
    "a/", "a.", ".hidden", "a/.b", "a.lock", "a/b.lock", "@", "a\x01",
])
def test_bad_branch_names_refused(name: str) -> None:
    with pytest.raises(GitError, match="invalid branch name"):
        check_branch_name(name)


async def test_ensure_refuses_a_bad_branch(repo: GitRepo) -> None:
    with pytest.raises(GitError, match="invalid branch name"):
        await repo.ensure("switchboard/../evil")
    assert await repo.current_branch() == BRANCH


def test_branch_name_shape() -> None:
    assert branch_name("discord-123", "f3a9c1d2-77aa-4bb1") == "switchboard/discord-123-f3a9c1d2"
    assert check_branch_name("switchboard/discord-1-abc") == "switchboard/discord-1-abc"
    for name in ("switchboard/discord-1-abc", "feature/x_y-z.1"):
        check = subprocess.run(["git", "check-ref-format", "--branch", name],
                               capture_output=True, timeout=30, check=False)
        assert check.returncode == 0, name


async def test_a_workspace_inside_another_repository_gets_its_own(tmp_path: Path) -> None:
    """``ensure`` looks at the repository the workspace is the top of, never at an outer one
    it happens to sit in (its branch would have been taken for the workspace's)."""
    outer = tmp_path / "outer"
    outer.mkdir()
    _git(outer, "init", "--quiet", "--initial-branch=trunk")
    _git(outer, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet",
         "--allow-empty", "-m", "outer")
    workspace = Workspace.for_session(outer / "workspaces", "discord-2")
    git = GitRepo(workspace)
    await git.ensure(BRANCH)
    assert (workspace.root / ".git").is_dir()
    assert _git(workspace.root, "rev-parse", "--abbrev-ref", "HEAD") == BRANCH
    assert _git(outer, "rev-parse", "--abbrev-ref", "HEAD") == "trunk"
    (workspace.root / "a.txt").write_text("a\n")
    sha = await git.commit_all("add a")
    assert sha is not None and _git(workspace.root, "rev-parse", "HEAD") == sha
    assert _git(outer, "log", "--format=%s") == "outer"
    _git(workspace.root, "checkout", "--quiet", "--detach")
    await git.ensure(BRANCH)  # from a detached HEAD back to the run's branch
    assert await git.current_branch() == BRANCH
