"""Imported once by the supervisor's fork server, before it forks any actor process.

Every actor process is forked from a process that already imported nats-py, msgspec,
pydantic and the actors (and ``switchboard._preload_litellm`` when a model needs litellm), then
froze the garbage collector (``gc.freeze``) so the children's reference-count writes do not
copy those pages.
"""

import gc

import nats  # noqa: F401
import rank_bm25  # noqa: F401 - the case base's ranking (and numpy), ~100 ms to import
import uvloop  # noqa: F401

import actors.agent  # noqa: F401
import actors.brainstorm  # noqa: F401
import actors.classifier  # noqa: F401
import actors.consolidator  # noqa: F401
import actors.evaluator  # noqa: F401
import actors.planner  # noqa: F401
import actors.reflector  # noqa: F401
import modelcall  # noqa: F401
import offline_model  # noqa: F401
import switchboard.worker  # noqa: F401

gc.collect()
gc.freeze()
