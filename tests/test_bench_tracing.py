"""The bench's ``tracing`` scenario measures whole steps: each delivery is handled, its send
confirmed, the delivery acked and its ``handled`` event published, in every variant."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from system import REPO


@pytest.mark.parametrize("variant", ["none", "off"])
def test_each_step_sends_acks_and_reports(variant: str) -> None:
    done = subprocess.run([sys.executable, "-m", "bench._tracing", variant, "--steps", "300"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["variant"] == variant
    assert result["publishes"] == 3 * 300  # the send, the ack, the handled event
    assert result["cpu_per_step_us"] > 0
