"""Imported once by the supervisor's fork server, before it forks any actor process.

Every actor process is forked from a process that already imported litellm, nats-py, msgspec,
pydantic and the actors, then froze the garbage collector (``gc.freeze``) so the children's
reference-count writes do not copy those pages: on this machine 13 forked processes that
import litellm hold about 390 MB in all (proportional set size) instead of about 2.5 GB
(shared/NOTES.md: ``import litellm`` alone is about 160-195 MB per process).
"""

import gc
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402,F401
import nats  # noqa: E402,F401
import rank_bm25  # noqa: E402,F401 - the case base's ranking (and numpy), ~100 ms to import
import uvloop  # noqa: E402,F401

import actors.agent  # noqa: E402,F401
import actors.brainstorm  # noqa: E402,F401
import actors.classifier  # noqa: E402,F401
import actors.consolidator  # noqa: E402,F401
import actors.evaluator  # noqa: E402,F401
import actors.llm  # noqa: E402,F401
import actors.planner  # noqa: E402,F401
import actors.reflector  # noqa: E402,F401
import actors.worker  # noqa: E402,F401

litellm.suppress_debug_info = True
gc.collect()
gc.freeze()
