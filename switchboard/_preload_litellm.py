"""Imported by the supervisor's fork server after ``switchboard._preload`` when the topology calls
a model through litellm (any provider but the in-process offline model).

On this machine 13 forked processes that import litellm hold about 390 MB in all
(proportional set size) when the fork server imported it first and froze the garbage
collector, instead of about 2.5 GB (docs/measurements.md: ``import litellm`` alone is about
160-195 MB per process).
"""

import gc
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

litellm.suppress_debug_info = True
gc.collect()
gc.freeze()
