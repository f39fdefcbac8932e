"""The router's rules, without a server: keyword fallback, topology rules, the model's answer,
fallbacks, the case base and tiers."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from actors.router import (
    BRANCH_TRIGGERS,
    CaseIndex,
    Route,
    TierChoice,
    UnparsableAnswerError,
    brainstorm_models,
    choose_tier,
    escalation_levels,
    keyword_route,
    learned_tier,
    models_for,
    parse_answer,
    route_message,
    start_level,
)
from core.config import load_topology
from core.errors import ConfigError, ModelRejectedError, ModelUnavailableError
from core.rules import RuleSpec, evaluate
from gateway.config import BotConfig
from protocol import Case, ChatMessage, Complexity, Flow, TaskType

TOPOLOGY = load_topology()


def _msg(text: str, **changes: object) -> ChatMessage:
    fields: dict[str, Any] = {"message_id": "1", "session": "terminal-x", "origin": "o",
                              "user_id": "u1", "text": text}
    fields.update(changes)
    return ChatMessage(**fields)


def _topology(**changes: Any) -> Any:
    data = TOPOLOGY.model_dump(mode="json", exclude_unset=True)  # no `tier` the file omits
    data.update(changes)
    return type(TOPOLOGY).model_validate(data)


# --- keyword fallback ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello", "thanks!", "how are you?"])
def test_social_messages_are_simple(text: str) -> None:
    route = keyword_route(text)
    assert route.respond and route.flow is Flow.SIMPLE


@pytest.mark.parametrize(("text", "flow", "role"), [
    # Three messages that the old keyword rules got wrong.
    ("how do I deploy a flask app? just the idea", Flow.SIMPLE, "devops_engineer"),
    ("make the table of contents in my README nicer", Flow.SEQUENTIAL,
     "documentation_writer"),
    ("write a python script greet.py that prints a greeting and run it", Flow.SEQUENTIAL,
     "python_coder"),
    ("what is async/await in JavaScript?", Flow.SIMPLE, "js_ts_coder"),
    ("write a python function that reverses a string and test it", Flow.SEQUENTIAL,
     "python_coder"),
    ("create a react component for a login form in typescript", Flow.SEQUENTIAL,
     "js_ts_coder"),
    ("write a Dockerfile and deploy it to kubernetes", Flow.SEQUENTIAL, "devops_engineer"),
    ("create a postgres schema for orders with an index", Flow.SEQUENTIAL, "dba"),
    ("write a README for this project", Flow.SEQUENTIAL, "documentation_writer"),
    ("run kubectl get pods", Flow.SEQUENTIAL, "command_executor"),
    ("review this code for bugs and fix them", Flow.SEQUENTIAL, "code_reviewer"),
])
def test_keyword_routes(text: str, flow: Flow, role: str) -> None:
    route = keyword_route(text)
    assert (route.flow, route.role) == (flow, role), route.reason
    assert route.source == "keywords"


@pytest.mark.parametrize("trigger", BRANCH_TRIGGERS)
def test_every_branch_trigger_routes_to_branch(trigger: str) -> None:
    route = keyword_route(f"For our cache, {trigger.upper()} please")
    assert route.flow is Flow.BRANCH and route.task_type is TaskType.BRAINSTORM


@pytest.mark.parametrize("text", ["", "   ", "?!", "..."])
def test_messages_without_words_get_no_answer(text: str) -> None:
    assert not keyword_route(text).respond
    assert keyword_route(text, attachments=True).respond


def test_complexity_grows_with_scope() -> None:
    assert keyword_route("write a python function to add two numbers").complexity \
        is Complexity.SIMPLE
    big = keyword_route("refactor the entire python backend into a production system")
    assert big.complexity is Complexity.COMPLEX


def test_general_chat_goes_to_the_bots_profile() -> None:
    assert keyword_route("hello", profile="architect").role == "architect"
    assert keyword_route("hello", profile="wizard").role == "researcher"
    assert keyword_route("write a python function to add numbers",
                         profile="architect").role == "python_coder"


# --- the model's answer --------------------------------------------------------------------

_FENCED = """Sure! Here is my classification:

```json
{"respond": true, "flow": "SEQUENTIAL", "task_type": "docs",
 "role": "documentation_writer", "complexity": "simple", "reason": "edit the README"}
```

Let me know if you need anything else."""


def test_fenced_json_inside_prose_is_parsed() -> None:
    route = parse_answer(_FENCED)
    assert (route.flow, route.role, route.task_type) == (
        Flow.SEQUENTIAL, "documentation_writer", TaskType.DOCS)
    assert route.source == "model" and route.reason == "edit the README"


@pytest.mark.parametrize("answer", [
    "I think this is a coding task.",
    '{"respond": true, "flow": "breakglass", "task_type": "question", "role": "architect",'
    ' "complexity": "simple", "reason": "x"}',
    '{"respond": true, "flow": "simple", "task_type": "question", "role": "wizard",'
    ' "complexity": "simple", "reason": "x"}',
    '{"respond": "maybe", "flow": 3}',
    '{"answer": 42}',
])
def test_unusable_answers_are_refused(answer: str) -> None:
    with pytest.raises(UnparsableAnswerError):
        parse_answer(answer)


def _ask(answer: str | BaseException, delay: float = 0.0) -> Any:
    calls: list[list[dict[str, Any]]] = []
    tiers: list[int] = []

    async def ask(messages: list[dict[str, Any]], tier: int) -> str:
        calls.append(messages)
        tiers.append(tier)
        if delay:
            await asyncio.sleep(delay)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    ask.calls = calls  # type: ignore[attr-defined]
    ask.tiers = tiers  # type: ignore[attr-defined]
    return ask


async def test_the_model_decides_when_it_answers() -> None:
    ask = _ask(_FENCED)
    route = await route_message(_msg("please tidy up the docs"), TOPOLOGY, ask=ask)
    assert route.source == "model" and route.role == "documentation_writer"
    system = ask.calls[0][0]["content"]
    assert system.startswith("You are Switchboard's router.")
    assert "addressed the bot directly" in system


@pytest.mark.parametrize(("failure", "words"), [
    (ModelUnavailableError("model 'm' failed: 500"), "the model failed"),
    (ModelRejectedError("model 'm' failed: authentication"), "the model failed"),
    ("no JSON here, sorry", "unusable"),
])
async def test_model_failures_fall_back_to_keywords(failure: Any, words: str) -> None:
    route = await route_message(_msg("write a python script greet.py and run it"), TOPOLOGY,
                                ask=_ask(failure))
    assert route.source == "keywords" and route.role == "python_coder"
    assert words in route.reason


async def test_a_slow_model_falls_back_within_the_timeout() -> None:
    topology = _topology(router={"timeout_s": 0.2})
    route = await route_message(_msg("hello"), topology, ask=_ask(_FENCED, delay=5))
    assert route.source == "keywords" and "did not answer within 0.2 s" in route.reason


async def test_ambient_messages_may_get_no_answer_but_addressed_ones_always_do() -> None:
    silent = ('{"respond": false, "flow": "simple", "task_type": "social", "role": '
              '"researcher", "complexity": "simple", "reason": "talking to Bob"}')
    ambient = await route_message(_msg("bob, lunch?", addressed=False), TOPOLOGY,
                                  ask=_ask(silent))
    assert not ambient.respond and ambient.source == "model"
    assert "without mentioning the bot" in " ".join(
        (await _capture_prompt(_msg("bob, lunch?", addressed=False))).split())
    addressed = await route_message(_msg("bob, lunch?"), TOPOLOGY, ask=_ask(silent))
    assert addressed.respond


async def _capture_prompt(chat: ChatMessage) -> str:
    ask = _ask(_FENCED)
    await route_message(chat, TOPOLOGY, ask=ask)
    return str(ask.calls[0][0]["content"])


async def test_breakglass_is_a_permission_not_a_choice() -> None:
    allowed = _topology(breakglass={"allowed_users": ["boss"], "role": "architect"})
    boss = await route_message(_msg("hi", breakglass=True, user_id="boss"), allowed, ask=None)
    assert boss.flow is Flow.BREAKGLASS and boss.source == "breakglass"
    intern = await route_message(_msg("hi", breakglass=True, user_id="intern"), allowed,
                                 ask=None)
    assert intern.flow is Flow.SIMPLE


# --- rules ---------------------------------------------------------------------------------


def test_rules_are_validated_with_clear_errors(tmp_path: Any) -> None:
    bad = [
        ({"name": "x", "when": {"text": "(unclosed"}, "then": {"role": "dba"}},
         "not a valid regular expression"),
        ({"name": "x", "then": {"role": "wizard"}}, "unknown agent role"),
        ({"name": "x", "then": {"flow": "breakglass"}}, "is a permission"),
        ({"name": "x", "then": {}}, "at least one action"),
        ({"name": "x", "then": {"tier_min": 3, "tier_max": 2}}, "above tier_max"),
    ]
    for rule, message in bad:
        with pytest.raises(ValueError, match=message):
            RuleSpec.model_validate(rule)
    path = tmp_path / "topology.yaml"
    path.write_text(_yaml_with_rules(
        "  - {name: a, then: {role: dba}}\n  - {name: a, then: {role: dba}}\n"))
    with pytest.raises(ConfigError, match="two rules are named 'a'"):
        load_topology(path)


def _yaml_with_rules(rules: str) -> str:
    import yaml

    from core.config import DEFAULT_TOPOLOGY

    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    return yaml.safe_dump(data) + "rules:\n" + rules


async def test_a_rule_overrides_the_model() -> None:
    topology = _topology(rules=[{"name": "docs-bot", "when": {"bot": "docs"},
                                 "then": {"role": "documentation_writer"}}])
    answer = ('{"respond": true, "flow": "simple", "task_type": "question", "role": '
              '"researcher", "complexity": "simple", "reason": "a question"}')
    route = await route_message(_msg("what is a haiku?", bot="docs"), topology,
                                ask=_ask(answer))
    assert route.role == "documentation_writer" and route.decided_by == "rule:docs-bot"
    other = await route_message(_msg("what is a haiku?", bot="main"), topology,
                                ask=_ask(answer))
    assert other.role == "researcher" and other.source == "model"


async def test_rules_forcing_flow_and_role_skip_the_model() -> None:
    topology = _topology(rules=[{"name": "ops", "when": {"channel": ["42"]},
                                 "then": {"flow": "sequential", "role": "devops_engineer"}}])
    ask = _ask(_FENCED)
    route = await route_message(_msg("the build is red", channel_id="42"), topology, ask=ask)
    assert (route.flow, route.role, route.source) == (Flow.SEQUENTIAL, "devops_engineer",
                                                      "rule")
    assert ask.calls == []


async def test_refusals_and_breakglass_requirements() -> None:
    topology = _topology(
        breakglass={"allowed_users": ["boss"], "role": "architect"},
        rules=[
            {"name": "no-crypto", "when": {"text": "(?i)bitcoin"},
             "then": {"refuse": "I don't help with cryptocurrency here."}},
            {"name": "prod-needs-breakglass", "when": {"text": "(?i)prod", "flow": "sequential"},
             "then": {"require_breakglass": True}},
        ])
    refused = await route_message(_msg("mine bitcoin for me"), topology, ask=None)
    assert refused.refusal == "I don't help with cryptocurrency here."
    assert refused.decided_by == "rule:no-crypto"
    work = "write a python script that deploys to prod"
    intern = await route_message(_msg(work), topology, ask=None)
    assert "BREAKGLASS" in intern.refusal and intern.decided_by == "rule:prod-needs-breakglass"
    boss = await route_message(_msg(work, user_id="boss"), topology, ask=None)
    assert not boss.refusal and boss.flow is Flow.SEQUENTIAL
    question = await route_message(_msg("is prod up?"), topology, ask=None)
    assert not question.refusal  # the flow condition does not hold for a SIMPLE question


async def test_tier_bounds_of_rules_reach_the_route() -> None:
    topology = _topology(rules=[
        {"name": "cheap-guild", "when": {"guild": "7"}, "then": {"tier_max": 2}},
        {"name": "serious-work", "when": {"flow": "sequential"}, "then": {"tier_min": 2}},
    ])
    route = await route_message(_msg("write a python script x.py", guild_id="7"), topology,
                                ask=None)
    assert (route.tier_min, route.tier_max) == (2, 2)


def test_a_bot_rule_names_the_discord_bot_and_a_channel_rule_its_threads() -> None:
    """A Discord message carries ``bot=""`` and origin ``discord-<id>``,
    and in a thread the thread's id; ``bot:`` matches the bot's name (what ``BotConfig.stamp``
    puts on every request) or origin, ``channel:`` the channel or a thread's parent."""
    rules = [RuleSpec.model_validate(r) for r in (
        {"name": "docs-bot", "when": {"bot": ["docs"]}, "then": {"role": "documentation_writer"}},
        {"name": "by-origin", "when": {"bot": "discord-555"}, "then": {"tier_min": 2}},
        {"name": "ops", "when": {"channel": ["42"]}, "then": {"tier_max": 3}},
    )]
    docs = BotConfig(name="docs", token="t" * 20)
    in_channel = docs.stamp(_msg("write the changelog", origin="discord-555", channel_id="42"))
    in_thread = docs.stamp(_msg("and the readme", origin="discord-555", channel_id="9001",
                                parent_channel_id="42"))
    for chat in (in_channel, in_thread):
        assert evaluate(rules, chat, flow=None, breakglass_users=()).names == [
            "docs-bot", "by-origin", "ops"]
    other = BotConfig(name="coder", token="t" * 20).stamp(
        _msg("hi", origin="discord-777", channel_id="9002", parent_channel_id="43"))
    assert evaluate(rules, other, flow=None, breakglass_users=()).names == []
    terminal = _msg("hi", bot="docs")  # ChatMessage.bot still names the bot where set
    assert evaluate(rules, terminal, flow=None, breakglass_users=()).names == ["docs-bot"]


_SIMPLE = ('{"respond": true, "flow": "simple", "task_type": "social", "role": "researcher", '
           '"complexity": "simple", "reason": "small talk"}')
_SILENT = ('{"respond": false, "flow": "simple", "task_type": "social", "role": "researcher", '
           '"complexity": "simple", "reason": "talking to Bob"}')


async def test_only_a_message_the_router_would_answer_is_a_paused_runs_answer() -> None:
    """The answer to a paused run passes should-respond and the rules (both
    phases, the second on the paused run's SEQUENTIAL flow) first."""
    topology = _topology(rules=[
        {"name": "no-crypto", "when": {"text": "(?i)bitcoin"}, "then": {"refuse": "No."}},
        {"name": "prod-needs-breakglass", "when": {"text": "(?i)prod", "flow": "sequential"},
         "then": {"require_breakglass": True}},
        {"name": "docs-bot", "when": {"bot": "docs"}, "then": {"role": "documentation_writer"}},
    ])
    ask = _ask(_SIMPLE)
    answer = await route_message(_msg("the blue one", bot="docs"), topology, ask=ask,
                                 paused_role="python_coder")
    assert (answer.source, answer.flow, answer.role) == ("resume", Flow.SEQUENTIAL,
                                                         "python_coder")
    assert ask.calls == []  # an addressed message needs no should-respond
    chatter = await route_message(_msg("<@99> lunch?", addressed=False), topology,
                                  ask=_ask(_SILENT), paused_role="python_coder")
    assert not chatter.respond and chatter.source == "model"
    heard = await route_message(_msg("the blue one, I think", addressed=False), topology,
                                ask=_ask(_SIMPLE), paused_role="python_coder")
    assert heard.source == "resume"
    refused = await route_message(_msg("use bitcoin"), topology, ask=None,
                                  paused_role="python_coder")
    assert refused.refusal == "No." and refused.source == "rule"
    guarded = await route_message(_msg("deploy it to prod"), topology, ask=None,
                                  paused_role="python_coder")
    assert guarded.decided_by == "rule:prod-needs-breakglass" and guarded.refusal


async def test_the_routers_own_call_keeps_to_the_rules_tier_bounds() -> None:
    topology = _topology(router={"tier": 3}, rules=[
        {"name": "cheap", "when": {"guild": "7"}, "then": {"tier_max": 1}}])
    capped, free = _ask(_SIMPLE), _ask(_SIMPLE)
    await route_message(_msg("hello", guild_id="7"), topology, ask=capped)
    await route_message(_msg("hello", guild_id="8"), topology, ask=free)
    assert (capped.tiers, free.tiers) == ([1], [3])


def test_every_model_call_of_a_request_keeps_to_its_tier_bounds() -> None:
    """The planner (tier 4), the reflector (tier 4), BRANCH's brainstormers
    (tiers 2 and 3) and an escalation path above the cap all stay within a ``tier_max``."""
    topology = _topology(
        tiers={1: ["offline/a"], 2: ["offline/b1", "offline/b2"], 3: ["offline/c"],
               4: ["offline/d"]},
        escalation=["offline/c", "offline/d"], brainstorm_models=["offline/b1", "offline/c"])
    tier = {"offline/a": 1, "offline/b1": 2, "offline/b2": 2, "offline/c": 3, "offline/d": 4}
    assert [m.name for m in models_for(topology, 4, tier_max=2)] == ["offline/b1", "offline/b2"]
    assert [m.name for m in models_for(topology, 1, tier_min=3)] == ["offline/c"]
    assert models_for(topology, 4, tier_min=3, tier_max=2)[0].name == "offline/b1"  # cap wins
    pair = brainstorm_models(topology, tier_max=2)
    assert [[tier[m.name] for m in models] for models in pair] == [[2, 2], [2, 2]]
    assert [models[0].name for models in pair] == ["offline/b1", "offline/b2"]  # two voices
    assert [m[0].name for m in brainstorm_models(topology)] == ["offline/b1", "offline/c"]
    [level] = escalation_levels(topology, tier_max=2)
    assert level.tier == 2 and [m.name for m in level.models] == ["offline/b1", "offline/b2"]


# --- tiers and models ----------------------------------------------------------------------


def test_tier_choice_precedence() -> None:
    topology = _topology(task_tiers={"docs": 2})
    base: dict[str, Any] = {"role": "documentation_writer", "flow": Flow.SEQUENTIAL,
                            "task_type": TaskType.DOCS}
    assert choose_tier(topology, **base).source == "task_type"
    assert choose_tier(topology, **{**base, "task_type": TaskType.CODING}).tier == 3  # role
    learned = TierChoice(4, "case", "similar cases needed 4")
    assert choose_tier(topology, learned=learned, **base).tier == 4
    assert choose_tier(topology, learned=learned, session_tier=1, **base).source == "session"
    low = choose_tier(topology, session_confidence=30, **base)
    assert (low.tier, low.source) == (3, "feedback")
    capped = choose_tier(topology, learned=learned, tier_max=2, **base)
    assert (capped.tier, capped.source) == (2, "rule")
    assert choose_tier(topology, role="researcher", flow=Flow.SIMPLE,
                       task_type=TaskType.QUESTION).tier == 1
    assert choose_tier(topology, role="architect", flow=Flow.BREAKGLASS,
                       task_type=TaskType.QUESTION, tier_max=1).tier == 4


def test_models_per_tier_in_fallback_order() -> None:
    topology = _topology(
        tiers={1: ["offline/a"], 2: ["offline/b1", "offline/b2"], 3: ["offline/c"],
               4: ["offline/d"]},
        escalation=[], role_models={"python_coder": {2: "offline/own"}})
    names = [m.name for m in models_for(topology, 2, role="python_coder")]
    assert names == ["offline/own", "offline/b1", "offline/b2"]
    with_bot = [m.name for m in models_for(topology, 2, role="dba",
                                           overrides={"2": "offline/bot"})]
    assert with_bot == ["offline/bot", "offline/b1", "offline/b2"]
    levels = escalation_levels(topology, role="dba")
    assert [lv.tier for lv in levels] == [1, 2, 3, 4]
    assert [m.name for m in levels[1].models] == ["offline/b1", "offline/b2"]
    bounded = escalation_levels(topology, tier_min=2, tier_max=3)
    assert [lv.tier for lv in bounded] == [2, 3]
    assert start_level(levels, 3) == 2 and start_level(bounded, 1) == 0


# --- case base -----------------------------------------------------------------------------


def _case(case_id: str, task: str, *, final: int, start: int | None = None,
          outcome: str = "succeeded", at: float = 0.0) -> Case:
    start = final if start is None else start
    return Case(case_id=case_id, session="s", task=task, role="python_coder",
                task_type="coding", complexity="simple", start_tier=start, final_tier=final,
                escalations=final - start, outcome=outcome, at=at)


def test_similar_cases_are_ranked_and_bounded() -> None:
    index = CaseIndex(limit=3)
    index.put(_case("a", "write a fizzbuzz function in python and test it", final=2, at=1))
    index.put(_case("b", "deploy the web app to kubernetes with helm", final=3, at=2))
    index.put(_case("c", "write a python function computing fizzbuzz with tests", final=2,
                    at=3))
    found = index.similar("write fizzbuzz in python with a test", k=2, min_similarity=0.2)
    assert [s.case.case_id for s in found] == ["a", "c"] or \
        [s.case.case_id for s in found] == ["c", "a"]
    assert index.similar("bake a cake", k=3, min_similarity=0.2) == []
    index.put(_case("d", "bake a chocolate cake", final=1, at=4))
    assert len(index) == 3 and index.get("a") is None  # the oldest went first


def test_the_starting_tier_learns_from_similar_cases() -> None:
    index = CaseIndex()
    index.put(_case("1", "parse a csv file of orders in python", start=2, final=4))
    index.put(_case("2", "parse a csv file of invoices in python", start=2, final=4))
    index.put(_case("3", "parse a csv file of users in python", start=2, final=3))
    similar = index.similar("parse a csv file of payments in python", k=5,
                            min_similarity=0.3)
    learned = learned_tier(similar)  # the least tier one of them succeeded at
    assert learned is not None and learned.tier == 3 and learned.source == "case"
    failed = CaseIndex()
    failed.put(_case("f", "parse a csv file in python", final=2, outcome="failed"))
    assert learned_tier(failed.similar("parse a csv file in python", k=5,
                                       min_similarity=0.3)).tier == 3  # type: ignore[union-attr]
    assert learned_tier([]) is None


def test_a_start_pushed_up_by_feedback_does_not_keep_later_runs_up() -> None:
    # runs a 👎 pushed to tier 4 succeeded there; the task needs tier 2.
    index = CaseIndex()
    index.put(_case("a", "reverse a string in python with tests", final=2, at=1))
    index.put(_case("b", "reverse a list in python with tests", final=2, outcome="failed",
                    at=2))
    index.put(_case("c", "reverse a tuple in python with tests", final=3, at=3))
    index.put(_case("d", "reverse a deque in python with tests", final=4, at=4))
    index.put(_case("e", "reverse the words in python with tests", final=4, at=5))
    similar = index.similar("reverse a string of words in python with tests", k=5,
                            min_similarity=0.3)
    assert len(similar) == 5
    learned = learned_tier(similar)
    assert learned is not None and learned.tier == 2  # not the median of [2, 3, 3, 4, 4]


def test_one_thumbs_down_raises_the_next_run_one_tier_not_two() -> None:
    # the only similar case failed by a 👎 in this session at tier 2;
    # the 👎 also left the session's confidence at 30 (< 40).
    index = CaseIndex()
    index.put(msgspec.structs.replace(
        _case("r", "reverse a string in python with tests", final=2, outcome="failed"),
        session="discord-1", feedback=-1))
    similar = index.similar("reverse a list in python with tests", k=5, min_similarity=0.3)
    base: dict[str, Any] = {"role": "python_coder", "flow": Flow.SEQUENTIAL,
                            "task_type": TaskType.CODING, "session_confidence": 30}
    here = choose_tier(TOPOLOGY, learned=learned_tier(similar, session="discord-1"), **base)
    assert (here.tier, here.source) == (3, "case")
    elsewhere = choose_tier(TOPOLOGY, learned=learned_tier(similar, session="discord-2"),
                            **base)  # a low confidence of another session's own
    assert (elsewhere.tier, elsewhere.source) == (4, "feedback")
    assert choose_tier(TOPOLOGY, learned=learned_tier(similar, session="discord-1"),
                       **{**base, "session_tier": 2}).tier == 3  # /model, then the 👎


async def test_a_near_identical_succeeded_case_routes_without_the_model() -> None:
    index = CaseIndex()
    index.put(Case(case_id="c1", session="s", task="write the changelog for release 2.0",
                   role="documentation_writer", task_type="docs", complexity="medium"))
    ask = _ask(_FENCED)
    route = await route_message(_msg("write the changelog for release 2.0"), TOPOLOGY,
                                ask=ask, cases=index)
    assert route.source == "case" and route.decided_by == "case:c1"
    assert route.role == "documentation_writer" and ask.calls == []
    fresh = await route_message(_msg("write a haiku about autumn"), TOPOLOGY, ask=ask,
                                cases=index)
    assert fresh.source == "model"


def test_route_who_names_the_rule_or_source() -> None:
    assert Route(source="model").who == "model"
    assert Route(source="rule", decided_by="rule:x").who == "rule:x"


def test_the_readmes_topology_example_is_valid() -> None:
    import yaml

    from core.config import DEFAULT_TOPOLOGY, Topology

    readme = (DEFAULT_TOPOLOGY.parent / "README.md").read_text()
    block = readme.split("## How Switchboard decides")[1].split("```yaml\n")[1].split("```")[0]
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data.update(yaml.safe_load(block))
    topology = Topology.model_validate(data)
    assert [rule.name for rule in topology.rules] == [
        "docs-bot-writes-docs", "cheap-community-guild", "production-needs-breakglass",
        "no-crypto"]
    assert [m.name for m in models_for(topology, 3, role="code_reviewer")] == [
        "openai/gpt-4.1", "openrouter/anthropic/claude-sonnet-4.5"]
