"""The files users deploy with agree with the code: ``docker-compose.yml`` runs a NATS image
that has every server feature Switchboard needs (``actors.bus.MIN_SERVER_VERSION``), and so
does the bundled ``nats-server``."""

from __future__ import annotations

import re
import subprocess

import yaml
from system import REPO

from actors.bus import MIN_SERVER_VERSION
from actors.embedded import find_nats_server


def _version(text: str) -> tuple[int, int]:
    match = re.search(r"(\d+)\.(\d+)", text)
    assert match, text
    return int(match[1]), int(match[2])


def test_compose_runs_a_nats_image_new_enough() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    images = {name: service["image"] for name, service in compose["services"].items()
              if str(service.get("image", "")).startswith("nats:")}
    assert set(images) >= {"nats-1", "nats-2", "nats-3"}, images
    for name, image in images.items():
        tag = image.split(":", 1)[1]
        assert tag != "latest" and _version(tag) >= MIN_SERVER_VERSION, (name, image)


def test_the_bundled_server_is_new_enough() -> None:
    out = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert _version(out) >= MIN_SERVER_VERSION, out
