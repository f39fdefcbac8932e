"""NATS security without a running system: what each identity may do (derived from the code's
sends and subjects), the files `switchboard nats-config` writes, and how a process's
credentials, TLS settings and the server's refusals are read."""

from __future__ import annotations

import re
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from core.config import Settings, load_topology
from core.errors import AuthError, BrokerError, ConfigError, PermissionDeniedError, TLSError
from natsauth import (
    API,
    CLI,
    GATEWAY,
    ErrorLog,
    client_options,
    connect_error,
    identity_names,
    inbox_prefix,
    new_seed,
    permissions,
    public_key,
    redact,
    render_server_config,
    sends_to,
    settings_for,
    tls_context,
    write_nats_config,
)
from switchboard.embedded import find_nats_server

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY = load_topology(REPO / "topology.yaml", settings=Settings())
SUBJECTS = TOPOLOGY.subjects
ROLES = TOPOLOGY.roles
INBOX = "_INBOX.TEST"


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def allowed(identity: str, subject: str, *, subscribe: bool = False) -> bool:
    perms = permissions(SUBJECTS, ROLES, identity, INBOX)
    return any(matches(p, subject) for p in (perms.subscribe if subscribe else perms.publish))


# ------------------------------------------------------------------------ what each may do


_SOURCES = {
    "classifier": ["classifier.py"], "planner": ["planner.py"],
    "evaluator": ["evaluator.py"], "reflector": ["reflector.py"],
    "brainstorm": ["brainstorm.py"], "consolidator": ["consolidator.py"],
    "python_coder": ["agent.py", "agent_run.py", "agent_loop.py"],
}


@pytest.mark.parametrize("role", sorted(_SOURCES))
def test_every_literal_send_in_the_code_is_allowed(role: str) -> None:
    sent = set()
    for name in _SOURCES[role]:
        sent |= set(re.findall(r"\.send\(\s*\"(\w+)\"", (REPO / "actors" / name).read_text()))
    assert sent <= set(sends_to(role)), f"{role} sends to {sent - set(sends_to(role))}"
    for target in sent:
        assert allowed(role, SUBJECTS.task(target))


def test_a_role_consumes_its_own_stream_and_no_other_identity_reads_it() -> None:
    for role in ROLES:
        stream, durable = SUBJECTS.task_stream(role), SUBJECTS.durable(role)
        reads = [f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                 f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
                 f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.x",
                 f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}",
                 f"$JS.ACK.{stream}.{durable}.1.1.1.1.0"]
        assert allowed(role, reads[0]) and allowed(role, reads[1]) and allowed(role, reads[-1])
        for other in (*ROLES, GATEWAY, API):
            if other == role:
                continue
            refused = [s for s in reads if allowed(other, s)]
            assert not refused, f"{other} may read {role}'s stream: {refused}"
            assert not allowed(other, SUBJECTS.task(role), subscribe=True)


def test_identities_publish_only_where_the_flow_goes() -> None:
    assert allowed("classifier", SUBJECTS.task("python_coder"))
    assert not allowed("python_coder", SUBJECTS.task("classifier"))
    assert not allowed("python_coder", SUBJECTS.task("planner"))
    assert not allowed("consolidator", SUBJECTS.task("reflector"))
    assert allowed("python_coder", SUBJECTS.event("python_coder", "turn", "s1"))
    assert not allowed("python_coder", SUBJECTS.event("classifier", "classified", "s1"))
    assert allowed("reflector", SUBJECTS.case("c1"))
    assert not allowed("planner", SUBJECTS.case("c1"))
    assert allowed(GATEWAY, SUBJECTS.task("classifier"))
    assert allowed(GATEWAY, SUBJECTS.control("s1"))
    assert not allowed(GATEWAY, SUBJECTS.task("planner"))
    assert not allowed("python_coder", SUBJECTS.control("s1"))
    # Gateway-only buckets stay the gateway's; nobody but cli creates streams.
    assert allowed(GATEWAY, f"$KV.{SUBJECTS.bots_bucket}.bot.a")
    assert not allowed("python_coder", f"$KV.{SUBJECTS.bots_bucket}.bot.a")
    for identity in (*ROLES, GATEWAY):
        assert not allowed(identity, f"$JS.API.STREAM.CREATE.{SUBJECTS.task_stream('planner')}")
        assert not allowed(identity, f"$JS.API.STREAM.DELETE.{SUBJECTS.events_stream}")
    assert allowed(CLI, f"$JS.API.STREAM.CREATE.{SUBJECTS.task_stream('planner')}")


def test_each_identity_reads_replies_on_its_own_inbox_only() -> None:
    for identity in identity_names(TOPOLOGY):
        perms = permissions(SUBJECTS, ROLES, identity, INBOX)
        assert f"{INBOX}.>" in perms.subscribe
        assert not any(matches(p, "_INBOX.OTHER.x") for p in perms.subscribe)
    key = public_key(new_seed())
    assert inbox_prefix(key) == f"_INBOX.{key[1:17]}"


def test_an_unknown_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown identity"):
        permissions(SUBJECTS, ROLES, "intruder", INBOX)


# ------------------------------------------------------------------------ the files written


def test_nats_config_writes_private_seeds_and_a_config_the_server_accepts(tmp_path: Path
                                                                          ) -> None:
    outdir = tmp_path / "creds"
    written = write_nats_config(TOPOLOGY, outdir)
    assert set(written.seeds) == {*ROLES, GATEWAY, API, CLI}
    assert stat.S_IMODE(outdir.stat().st_mode) == 0o700
    for name, path in written.seeds.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        seed = path.read_bytes().strip()
        assert seed.startswith(b"SU") and public_key(seed) == written.keys[name]
    assert stat.S_IMODE(written.server_config.stat().st_mode) == 0o600
    text = written.server_config.read_text()
    assert all(key in text for key in written.keys.values())
    assert not any(path.read_text().strip() in text for path in written.seeds.values())
    check = subprocess.run([find_nats_server(), "-t", "-c", str(written.server_config)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    again = write_nats_config(TOPOLOGY, outdir)  # seeds kept: running processes stay valid
    assert again.keys == written.keys and again.created == ()
    (outdir / "cli.nk").unlink()
    rotated = write_nats_config(TOPOLOGY, outdir)
    assert rotated.created == ("cli",) and rotated.keys["cli"] != written.keys["cli"]


def test_a_broken_seed_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    outdir = tmp_path / "creds"
    outdir.mkdir()
    (outdir / "planner.nk").write_text("not a seed\n")
    with pytest.raises(ConfigError, match="planner.nk"):
        write_nats_config(TOPOLOGY, outdir)
    assert (outdir / "planner.nk").read_text() == "not a seed\n"


def test_rendering_names_every_identity() -> None:
    keys = {name: public_key(new_seed()) for name in ("planner", GATEWAY)}
    text = render_server_config(TOPOLOGY, keys, account="ACME")
    assert "ACME {" in text and "jetstream: enabled" in text
    assert "# planner" in text and "# gateway" in text
    assert '"$JS.API.CONSUMER.MSG.NEXT.SB_TASK_PLANNER.sb-planner"' in text


# ------------------------------------------------------------------------ the client side


def test_each_process_takes_its_own_seed_from_the_creds_dir(tmp_path: Path) -> None:
    write_nats_config(TOPOLOGY, tmp_path)
    settings = Settings(nats_creds_dir=tmp_path, NATS_CREDS="/elsewhere.creds")
    assert settings_for(settings, "planner").nats_creds == str(tmp_path / "planner.nk")
    assert settings_for(Settings(), "planner").nats_creds is None
    (tmp_path / "gateway.nk").unlink()
    with pytest.raises(ConfigError, match="no gateway.nk"):
        settings_for(settings, GATEWAY)


def test_a_seed_file_is_told_from_a_jwt_creds_file(tmp_path: Path) -> None:
    seed = new_seed()
    (tmp_path / "a.nk").write_bytes(seed + b"\n")
    options = client_options(Settings(NATS_CREDS=str(tmp_path / "a.nk")))
    assert options["nkeys_seed"] == str(tmp_path / "a.nk")
    assert options["inbox_prefix"] == inbox_prefix(public_key(seed))
    assert "user_credentials" not in options
    assert client_options(Settings(NATS_NKEY_SEED=str(tmp_path / "a.nk")))["nkeys_seed"]

    jwt = tmp_path / "user.creds"
    jwt.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n")
    options = client_options(Settings(NATS_CREDS=str(jwt)))
    assert options["user_credentials"] == str(jwt) and "nkeys_seed" not in options

    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ConfigError, match="neither a NATS JWT .creds file nor an nkey seed"):
        client_options(Settings(NATS_CREDS=str(tmp_path / "junk")))
    with pytest.raises(ConfigError, match="cannot read"):
        client_options(Settings(NATS_CREDS=str(tmp_path / "missing")))


def test_tls_settings_make_a_context_or_a_clear_error(tmp_path: Path) -> None:
    assert tls_context(Settings()) is None
    with pytest.raises(ConfigError, match="NATS_TLS_CA"):
        tls_context(Settings(NATS_TLS_CA=str(tmp_path / "missing.pem")))
    (tmp_path / "bad.pem").write_text("not pem")
    with pytest.raises(ConfigError, match="NATS_TLS_CA"):
        tls_context(Settings(NATS_TLS_CA=str(tmp_path / "bad.pem")))
    with pytest.raises(ConfigError, match="NATS_TLS_KEY is set without NATS_TLS_CERT"):
        tls_context(Settings(NATS_TLS_KEY=str(tmp_path / "key.pem")))
    with pytest.raises(ConfigError, match="NATS_TLS_CERT"):
        tls_context(Settings(NATS_TLS_CERT=str(tmp_path / "bad.pem")))


def test_connect_failures_become_the_specific_error() -> None:
    url = "tls://admin:hunter2@127.0.0.1:4222"
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    error = connect_error(url, TimeoutError(), verify)
    assert isinstance(error, TLSError) and "unable to get local issuer certificate" in str(error)
    assert "hunter2" not in str(error) and "admin:***@" in str(error)
    error = connect_error(url, Exception("nats: 'Authorization Violation'"), None)
    assert isinstance(error, AuthError)
    error = connect_error("nats://127.0.0.1:1", ConnectionRefusedError(111, "refused"), None)
    assert type(error) is BrokerError and "cannot reach NATS" in str(error)
    assert redact("nats://a:b@h:1,nats://h2:2") == "nats://a:***@h:1,nats://h2:2"


async def test_the_servers_refusals_are_remembered_by_subject() -> None:
    log = ErrorLog("python_coder/0")
    assert log.refusal() is None
    await log.callback(Exception('nats: permissions violation for publish to '
                                 '"$js.api.consumer.msg.next.sb_task_classifier.sb-classifier"'))
    await log.callback(Exception("nats: some other error"))
    subject = "$JS.API.CONSUMER.MSG.NEXT.SB_TASK_CLASSIFIER.sb-classifier"
    refused = log.refusal(subject)
    assert isinstance(refused, PermissionDeniedError) and refused.subject == subject
    assert "python_coder/0" in str(refused) and subject in str(refused)
    assert log.refusal("sb.task.x") is None
    assert log.refusal() is not None and str(log.last) == "nats: some other error"


def test_creds_on_the_command_line_win_over_the_creds_dir(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from switchboard.cli import _settings, build_parser

    write_nats_config(TOPOLOGY, tmp_path)
    monkeypatch.setenv("SB_NATS_CREDS_DIR", str(tmp_path))
    args = build_parser().parse_args(["actor", "python_coder", "--creds", "/x/python_coder.nk"])
    settings = _settings(args)
    assert settings.nats_creds == "/x/python_coder.nk" and settings.nats_creds_dir is None
    args = build_parser().parse_args(["actor", "python_coder"])
    assert settings_for(_settings(args), "python_coder").nats_creds == str(
        tmp_path / "python_coder.nk")
    monkeypatch.setenv("SB_NATS_CREDS_DIR", "")
    assert Settings().nats_creds_dir is None  # an empty variable unsets it
