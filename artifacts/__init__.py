"""The artifact store: each thread's workspace kept off the machine
(docs/design.md#workspaces-and-artifacts).

JetStream object store by default (bucket ``<PREFIX>_ARTIFACTS``, objects ``<session>/<path>``);
S3 through aioboto3 when ``SB_S3_BUCKET`` is set (keys ``<SB_S3_PREFIX><session>/<path>``).
``sync_to_store`` after a run, ``restore_workspace`` before a run on another machine,
``ArtifactStore.delete_session`` when the thread is deleted. ``Workspace`` is the directory
itself, and the one check of every path into it (the tools' and a restore's).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nats.js import JetStreamContext

from artifacts._jetstream import JetStreamArtifactStore
from artifacts._store import ArtifactInfo, ArtifactStore
from artifacts._sync import MAX_ARTIFACT_BYTES, SyncReport, restore_workspace, sync_to_store
from artifacts._workspace import Workspace
from core.config import Settings, Topology

if TYPE_CHECKING:
    from artifacts._s3 import S3ArtifactStore

_log = logging.getLogger(__name__)


def artifacts_bucket(topology: Topology) -> str:
    """The object store bucket of this deployment: ``SB_ARTIFACTS`` for prefix ``sb``."""
    return topology.subjects.artifacts_bucket


async def open_artifact_store(js: JetStreamContext, settings: Settings, topology: Topology
                              ) -> ArtifactStore:
    """The store this deployment uses: S3 when ``settings.s3_bucket`` is set, else JetStream.

    Args:
        js: the JetStream context (unused for S3).
        settings: ``s3_bucket``, ``s3_endpoint_url``, ``s3_prefix``.
        topology: the prefix (bucket name) and ``stream_replicas`` (copies of the bucket).

    Raises:
        ArtifactError: the S3 bucket is missing or unreachable; JetStream does not answer.
    """
    if settings.s3_bucket:
        from artifacts._s3 import S3ArtifactStore  # aioboto3 only when S3 is used

        return await S3ArtifactStore.open(settings.s3_bucket, prefix=settings.s3_prefix,
                                          endpoint_url=settings.s3_endpoint_url)
    return await JetStreamArtifactStore.open(
        js, artifacts_bucket(topology), replicas=topology.stream_replicas,
        index_bucket=topology.subjects.artifacts_index_bucket)


def __getattr__(name: str) -> Any:
    if name == "S3ArtifactStore":  # imported lazily: aioboto3 is heavy and often unused
        from artifacts._s3 import S3ArtifactStore

        return S3ArtifactStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "MAX_ARTIFACT_BYTES",
    "ArtifactInfo",
    "ArtifactStore",
    "JetStreamArtifactStore",
    "S3ArtifactStore",
    "SyncReport",
    "Workspace",
    "artifacts_bucket",
    "open_artifact_store",
    "restore_workspace",
    "sync_to_store",
]
