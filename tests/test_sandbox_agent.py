"""The sandbox through the genuine agent loop: ``switchboard up`` with a model (the OpenAI
stand-in) that writes a probe program and runs it with ``run_command``, as a stranger in a
guild could ask it to. Whatever the program reads comes back to the model and into the answer;
here nothing of the host does, a fork bomb is bounded, and the actors keep answering other
sessions meanwhile.
"""

from __future__ import annotations

import json
import socket
import textwrap
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from openai_standin import Answer, Call, ChatRequest, OpenAIStandin
from system import RunningSystem, running_system
from test_sandbox import PROBE, check_probe, probe_args

from switchboard.embedded import EmbeddedNats

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

KEY = "sk-test-sandbox-0123456789"
BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
ARGS: dict[str, Any] = {}
"""What the probe tries to reach (filled in by the ``system`` fixture)."""
TWIN = textwrap.dedent("""
    import json, sys, time
    args = json.loads(sys.argv[1])
    open("secret.txt", "w").write(args["secret"])
    start = time.time()
    time.sleep(args["hold_s"])  # the other person's run writes its secret meanwhile
    seen = {}
    for name, path in (("absolute", args["other"]),
                       ("relative", "../" + args["other_session"] + "/secret.txt")):
        try:
            seen[name] = ["reached", open(path).read()]
        except OSError as exc:
            seen[name] = ["refused", type(exc).__name__]
    print("TWIN " + json.dumps({"seen": seen, "start": start, "end": time.time()}))
""")
TWINS: dict[str, dict[str, Any]] = {}
"""Per twin (``a``, ``b``): its secret and the other's workspace (filled in by the test)."""


def brain(request: ChatRequest) -> Answer:
    """A model that does what it is asked: write the program, run it, report its output."""
    system, task = request.system_text, request.last_user_text
    if system.startswith("You are Switchboard's router."):
        agentic = "[probe]" in task or "[bomb]" in task or "[twin " in task
        route = ({"flow": "sequential", "task_type": "coding", "role": "python_coder",
                  "reason": "write and run a Python program"} if agentic else
                 {"flow": "simple", "task_type": "social", "role": "researcher",
                  "reason": "small talk"})
        return Answer.json_in_fence({"respond": True, "complexity": "simple", **route})
    if system.startswith("You are Switchboard's planner."):
        return Answer(text="1. Write the program.\n2. Run it.\n3. Report its output.")
    if system.startswith("You are Switchboard's reflector."):
        return Answer.json_in_fence({
            "what_worked": "ran it", "what_failed": "nothing", "root_cause": "none",
            "strategy_change": "none", "key_insight": "run programs"})
    if request.tools:
        results = request.tool_results
        if not results and "[twin " in task:
            me = task.split("[twin ", 1)[1][0]
            return Answer.tool_calls(
                Call("write_file", {"path": "twin.py", "content": TWIN}),
                Call("run_command", {"command": f"python twin.py '{json.dumps(TWINS[me])}'"}),
                text="I'll write the program and run it.")
        if not results:
            program = BOMB if "[bomb]" in task else PROBE
            command = ("python bomb.py" if "[bomb]" in task
                       else f"python probe.py '{json.dumps(ARGS)}'")
            name = "bomb.py" if "[bomb]" in task else "probe.py"
            return Answer.tool_calls(Call("write_file", {"path": name, "content": program}),
                                     Call("run_command", {"command": command}),
                                     text="I'll write the program and run it.")
        output = "\n".join(str(r.get("content") or "") for r in results)
        return Answer(text=f"The program printed:\n{output}")
    return Answer(text="Hello! How can I help?")


@pytest.fixture(scope="module")
def model_server() -> Iterator[OpenAIStandin]:
    with OpenAIStandin(models=("alpha",), api_keys=(KEY,)).in_thread() as server:
        server.brain = brain
        yield server


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory,
           model_server: OpenAIStandin) -> Iterator[RunningSystem]:
    """``switchboard up`` on a JetStream store and with a home directory (``~/.aws``) of its
    own, both of which the probe tries."""
    workdir = tmp_path_factory.mktemp("sandbox-agent")
    home = workdir / "home"
    env = {"SB_MODEL": "openai/alpha", "OPENAI_API_KEY": KEY, "HOME": str(home),
           "OPENAI_BASE_URL": model_server.base_url, "OPENAI_API_BASE": model_server.base_url}
    with EmbeddedNats(workdir / "nats") as server:
        ARGS.update(probe_args(workdir / "data", home, workdir / "nats",
                               int(urlparse(server.url).port or 0)))
        with running_system(server.url, workdir, extra_env=env, router={"timeout_s": 10},
                            tools={"timeout_s": 20, "processes": 48}) as running:
            yield running


def test_switchboard_up_says_which_sandbox_is_in_force(system: RunningSystem) -> None:
    assert any("🔒 Tool programs run in the" in line for line in system.output)


def test_a_probe_program_reaches_nothing_of_the_host(system: RunningSystem) -> None:
    done = system.chat("[probe] write probe.py that checks the environment and run it",
                       session="terminal-prober", timeout_s=180)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = check_probe(done.stdout, ARGS)
    assert seen["own_file"][0] == "reached"


def test_a_fork_bomb_is_bounded_while_others_are_served(system: RunningSystem) -> None:
    bombed: dict[str, Any] = {}

    def bomb() -> None:
        bombed["done"] = system.chat("[bomb] write bomb.py and run it",
                                     session="terminal-bomber", timeout_s=180)

    thread = threading.Thread(target=bomb)
    thread.start()
    other = system.chat("hello there", session="terminal-bystander", timeout_s=120)
    assert other.returncode == 0 and "Hello" in other.stdout, other.stdout + other.stderr
    thread.join(timeout=200)
    done = bombed["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[limit_exceeded]" in done.stdout
    with socket.create_connection(("127.0.0.1", int(ARGS["port"])), timeout=5):
        pass  # the NATS server still answers


def test_two_people_at_once_see_only_their_own_workspace(system: RunningSystem) -> None:
    """Two people's runs at the same time, each program writing a secret in its workspace and
    then reaching for the other's (by absolute and by relative path): each finds only its own."""
    sessions = {me: f"terminal-twin-{me}" for me in "ab"}
    for me, other in (("a", "b"), ("b", "a")):
        TWINS[me] = {"secret": f"TWIN-{me.upper()}-SECRET", "hold_s": 4,
                     "other": str(system.data_dir / "workspaces" / sessions[other] / "secret.txt"),
                     "other_session": sessions[other]}
    done: dict[str, Any] = {}

    def run(me: str) -> None:
        done[me] = system.chat(f"[twin {me}] write twin.py and run it", session=sessions[me],
                               timeout_s=180)

    threads = [threading.Thread(target=run, args=(me,)) for me in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=200)
    spans = []
    for me, other in (("a", "b"), ("b", "a")):
        result = done[me]
        assert result.returncode == 0, result.stdout + result.stderr
        line = next(x for x in result.stdout.splitlines() if "TWIN {" in x)
        report = json.loads(line[line.index("TWIN ") + len("TWIN "):])
        assert all(seen[0] == "refused" for seen in report["seen"].values()), report
        assert TWINS[other]["secret"] not in result.stdout
        own = system.data_dir / "workspaces" / sessions[me] / "secret.txt"
        assert own.read_text() == TWINS[me]["secret"]  # on the host, in its own workspace
        spans.append((report["start"], report["end"]))
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # the two ran at once
