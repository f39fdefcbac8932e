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

import actors.agent
import actors.brainstorm
import actors.classifier
import actors.consolidator
import actors.evaluator
import actors.planner
import actors.reflector  # noqa: F401
import modelcall  # noqa: F401
import offline_model  # noqa: F401
import switchboard.worker  # noqa: F401

gc.collect()
gc.freeze()
