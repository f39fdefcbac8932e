"""The artifact store on both backends: a real nats-server (JetStream object store) and a local
S3 server (moto's server mode over real HTTP, through aioboto3)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from artifacts import (
    ArtifactStore,
    JetStreamArtifactStore,
    Workspace,
    artifacts_bucket,
    open_artifact_store,
    restore_workspace,
    sync_to_store,
)
from core.config import Settings, Topology
from core.errors import ArtifactError, ArtifactNotFoundError
from switchboard.embedded import free_port

pytestmark = pytest.mark.timeout(60)

_TOPOLOGY = Topology(tiers={t: ["offline/echo"] for t in (1, 2, 3, 4)}, actors={},
                     prefix="sbtest")


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """A moto S3 server on a free local port, for the whole module."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


async def _s3_store(s3_url: str) -> ArtifactStore:
    import aioboto3

    bucket = f"discord-bot-artifacts-{uuid.uuid4().hex[:8]}"
    async with aioboto3.Session().client("s3", endpoint_url=s3_url) as client:
        await client.create_bucket(Bucket=bucket)
    settings = Settings(s3_bucket=bucket, s3_endpoint_url=s3_url)
    return await open_artifact_store(None, settings, _TOPOLOGY)  # type: ignore[arg-type]


@pytest.fixture(params=["jetstream", "s3"])
async def store(request: pytest.FixtureRequest, aws_env: None) -> AsyncIterator[ArtifactStore]:
    """The same store API on each backend."""
    if request.param == "s3":
        artifact_store = await _s3_store(request.getfixturevalue("s3_url"))
        try:
            yield artifact_store
        finally:
            await artifact_store.close()
        return
    nc = await nats.connect(request.getfixturevalue("nats_url"))
    try:
        artifact_store = await open_artifact_store(nc.jetstream(), Settings(), _TOPOLOGY)
        assert isinstance(artifact_store, JetStreamArtifactStore)
        assert artifact_store.bucket == "SBTEST_ARTIFACTS" == artifacts_bucket(_TOPOLOGY)
        yield artifact_store
        await artifact_store.close()
    finally:
        await nc.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _fill(workspace: Workspace) -> None:
    files = {
        "main.py": b"print('hello')\n",
        "src/pkg/__init__.py": b"",
        "src/pkg/core.py": b"def f():\n    return 42\n",
        "data/blob.bin": os.urandom(300_000),  # more than two 128 KiB object store chunks
        ".git/HEAD": b"ref: refs/heads/main\n",
    }
    for path, data in files.items():
        target = workspace.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


async def test_put_get_list_delete(store: ArtifactStore) -> None:
    big = os.urandom(1_000_000)
    await store.put("discord-1", "src/app.py", b"x = 1\n")
    await store.put("discord-1", "big.bin", big)
    await store.put("discord-1", "empty.txt", b"")
    await store.put("discord-2", "other.txt", b"other session")
    assert await store.get("discord-1", "src/app.py") == b"x = 1\n"
    assert await store.get("discord-1", "big.bin") == big
    assert await store.get("discord-1", "empty.txt") == b""
    assert await store.list("discord-1") == ["big.bin", "empty.txt", "src/app.py"]
    await store.put("discord-1", "src/app.py", b"x = 2\n")
    assert await store.get("discord-1", "src/app.py") == b"x = 2\n"
    assert await store.delete("discord-1", "empty.txt")
    assert not await store.delete("discord-1", "empty.txt")
    assert await store.list("discord-1") == ["big.bin", "src/app.py"]
    assert await store.list("discord-3") == []


async def test_missing_artifact(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        await store.get("discord-1", "nope.txt")
    await store.put("discord-1", "gone.txt", b"soon gone")
    await store.delete("discord-1", "gone.txt")
    with pytest.raises(ArtifactNotFoundError):
        await store.get("discord-1", "gone.txt")


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a"])
async def test_bad_paths_refused(store: ArtifactStore, path: str) -> None:
    with pytest.raises(ArtifactError, match="invalid artifact path"):
        await store.put("discord-1", path, b"x")


async def test_bad_session_refused(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="session"):
        await store.put("../evil", "a.txt", b"x")


async def test_sync_and_restore_on_another_machine(store: ArtifactStore, tmp_path: Path) -> None:
    here = Workspace.for_session(tmp_path / "machine-a", "discord-77")
    _fill(here)
    (here.root / "__pycache__").mkdir()
    (here.root / "__pycache__" / "x.pyc").write_bytes(b"cache")
    (here.root / "outside_link").symlink_to(tmp_path)
    report = await sync_to_store(store, here)
    assert (report.uploaded, report.skipped, report.removed) == (5, 0, 0)
    assert report.bytes == sum(len(d) for d in _tree(here.root).values()) - len(b"cache")
    assert "__pycache__/x.pyc" not in await store.list("discord-77")

    there = Workspace.for_session(tmp_path / "machine-b", "discord-77")
    restored = await restore_workspace(store, there)
    assert (restored.downloaded, restored.skipped) == (5, 0)
    expected = {k: v for k, v in _tree(here.root).items() if not k.startswith("__pycache__")}
    assert _tree(there.root) == expected
    mtime = (here.root / "main.py").stat().st_mtime_ns
    assert (there.root / "main.py").stat().st_mtime_ns == mtime
    again = await restore_workspace(store, there)
    assert (again.downloaded, again.skipped) == (0, 5)


async def test_second_sync_uploads_only_changes(store: ArtifactStore, tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "discord-5")
    _fill(workspace)
    await sync_to_store(store, workspace)
    unchanged = await sync_to_store(store, workspace)
    assert (unchanged.uploaded, unchanged.skipped, unchanged.bytes) == (0, 5, 0)

    (workspace.root / "main.py").write_bytes(b"print('changed')\n")
    (workspace.root / "src/pkg/core.py").unlink()
    (workspace.root / "new.txt").write_bytes(b"new")
    changed = await sync_to_store(store, workspace)
    assert (changed.uploaded, changed.skipped, changed.removed) == (2, 3, 1)
    assert changed.bytes == len(b"print('changed')\n") + 3
    assert await store.get("discord-5", "main.py") == b"print('changed')\n"
    assert "src/pkg/core.py" not in await store.list("discord-5")


async def test_restore_keeps_newer_local_files(store: ArtifactStore, tmp_path: Path) -> None:
    a = Workspace.for_session(tmp_path / "a", "discord-9")
    _fill(a)
    await sync_to_store(store, a)
    b = Workspace.for_session(tmp_path / "b", "discord-9")
    await restore_workspace(store, b)
    stored_mtime = (b.root / "main.py").stat().st_mtime_ns
    # b edits main.py later than a did; a's older copy of src/pkg/core.py is stale in b.
    (b.root / "main.py").write_bytes(b"edited on b\n")
    os.utime(b.root / "main.py", ns=(stored_mtime + 10**9, stored_mtime + 10**9))
    (b.root / "src/pkg/core.py").write_bytes(b"stale\n")
    os.utime(b.root / "src/pkg/core.py", ns=(stored_mtime - 10**9, stored_mtime - 10**9))
    report = await restore_workspace(store, b)
    assert report.downloaded == 1
    assert (b.root / "main.py").read_bytes() == b"edited on b\n"
    assert (b.root / "src/pkg/core.py").read_bytes() == b"def f():\n    return 42\n"


async def test_delete_session_removes_everything(store: ArtifactStore, tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "discord-11")
    _fill(workspace)
    await sync_to_store(store, workspace)
    await store.put("discord-12", "keep.txt", b"keep")
    assert await store.delete_session("discord-11") == 5
    assert await store.list("discord-11") == []
    assert await store.delete_session("discord-11") == 0
    assert await store.list("discord-12") == ["keep.txt"]
    fresh = Workspace.for_session(tmp_path / "fresh", "discord-11")
    assert (await restore_workspace(store, fresh)).downloaded == 0
    assert _tree(fresh.root) == {}


async def test_jetstream_delete_leaves_no_records(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        store = await open_artifact_store(js, Settings(), _TOPOLOGY)
        await store.put("discord-1", "a.txt", b"a" * 200_000)
        await store.delete_session("discord-1")
        info = await js.stream_info(f"OBJ_{artifacts_bucket(_TOPOLOGY)}")
        assert info.state.messages == 0
    finally:
        await nc.close()


async def test_missing_s3_bucket_is_a_clear_error(s3_url: str, aws_env: None) -> None:
    settings = Settings(s3_bucket="no-such-bucket", s3_endpoint_url=s3_url)
    with pytest.raises(ArtifactError, match="no-such-bucket"):
        await open_artifact_store(None, settings, _TOPOLOGY)  # type: ignore[arg-type]


async def test_git_branches_survive_the_move(store: ArtifactStore, tmp_path: Path) -> None:
    from actors.tools import GitRepo

    branch = "switchboard/discord-21-abcd1234"
    a = Workspace.for_session(tmp_path / "a", "discord-21")
    repo_a = GitRepo(a)
    await repo_a.ensure(branch)
    (a.root / "app.py").write_text("print('turn 1')\n")
    first = await repo_a.commit_all("turn 1")
    await sync_to_store(store, a)
    (a.root / "app.py").write_text("print('turn 2')\n")
    second = await repo_a.commit_all("turn 2")
    report = await sync_to_store(store, a)
    assert 0 < report.uploaded < len(await store.list("discord-21"))  # only what turn 2 made

    b = Workspace.for_session(tmp_path / "b", "discord-21")
    await restore_workspace(store, b)
    repo_b = GitRepo(b)
    assert await repo_b.current_branch() == branch
    assert await repo_b.changed_files() == ["app.py"]
    assert first is not None and second is not None
    assert await repo_b.commit_all("nothing new") is None
    await repo_b.merge(branch)
    assert (b.root / "app.py").read_text() == "print('turn 2')\n"


async def test_jetstream_lists_a_session_from_its_manifest(nats_url: str) -> None:
    """Objects stored before the index existed are indexed when the store opens; afterwards a
    session is listed from its manifest, and deleting it still removes what the manifest
    missed."""
    from nats.js.api import ObjectMeta

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        bucket = artifacts_bucket(_TOPOLOGY)
        raw = await js.create_object_store(bucket)
        await raw.put("discord-1/old.txt", b"from before the index",
                      meta=ObjectMeta(name="discord-1/old.txt", headers={"Sb-Mtime-Ns": ["7"]}))
        store = await open_artifact_store(js, Settings(), _TOPOLOGY)
        old = (await store.stat("discord-1"))["old.txt"]
        assert (old.size, old.mtime_ns) == (len(b"from before the index"), 7)
        await store.put("discord-1", "new.txt", b"new", mtime_ns=9)
        await store.put("discord-2", "other.txt", b"other")
        assert sorted(await store.list("discord-1")) == ["new.txt", "old.txt"]
        assert await store.list("discord-2") == ["other.txt"]
        # An object the manifest does not know (a put that failed before its index update).
        await raw.put("discord-1/stray.txt", b"stray")
        assert await store.delete_session("discord-1") == 3
        assert await store.list("discord-1") == []
        assert await store.list("discord-2") == ["other.txt"]
    finally:
        await nc.close()


async def test_jetstream_concurrent_puts_and_deletes_all_reach_the_manifest(
        nats_url: str) -> None:
    """Puts and deletes made at once are written to the manifest together (group commit):
    none is lost."""
    import asyncio

    nc = await nats.connect(nats_url)
    try:
        store = await open_artifact_store(nc.jetstream(), Settings(), _TOPOLOGY)
        await asyncio.gather(*(store.put("discord-9", f"f{i}.txt", b"x" * i)
                               for i in range(24)))
        await asyncio.gather(*(store.delete("discord-9", f"f{i}.txt") for i in range(0, 24, 2)),
                             store.put("discord-9", "late.txt", b"late"))
        listed = await store.stat("discord-9")
        assert sorted(listed) == sorted([f"f{i}.txt" for i in range(1, 24, 2)] + ["late.txt"])
        assert listed["f5.txt"].size == 5
    finally:
        await nc.close()
