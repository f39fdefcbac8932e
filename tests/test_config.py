"""Typed configuration: topology.yaml validation and per-bot model overrides (no server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.router import escalation_levels, models_for
from core.config import Settings, load_topology
from core.errors import ConfigError

TOPOLOGY = load_topology()


def test_the_default_topology_is_offline_with_every_actor() -> None:
    assert all(spec.name.startswith("offline/") for t in (1, 2, 3, 4)
               for spec in models_for(TOPOLOGY, t))
    assert set(TOPOLOGY.actors) == set(TOPOLOGY.roles)
    assert [level.name for level in escalation_levels(TOPOLOGY)] == [
        "offline/tier-1", "offline/tier-2", "offline/tier-3", "offline/tier-4"]


def test_a_bots_model_overrides_replace_tiers_and_the_escalation_path() -> None:
    overrides = {"2": "openai/gpt-4o-mini", "9": "x/ignored"}
    assert models_for(TOPOLOGY, 2, overrides=overrides)[0].name == "openai/gpt-4o-mini"
    assert models_for(TOPOLOGY, 3, overrides=overrides)[0].name == "offline/tier-3"
    levels = escalation_levels(TOPOLOGY, overrides=overrides)
    assert levels[1].name == "openai/gpt-4o-mini"
    assert [m.name for m in levels[1].models] == ["openai/gpt-4o-mini", "offline/tier-2"]
    assert models_for(TOPOLOGY, 2)[0].name == "offline/tier-2"  # the original is untouched


def test_sb_model_overrides_every_tier(tmp_path: Path) -> None:
    settings = Settings().model_copy(update={"model": "ollama/llama3.1"})
    topology = load_topology(settings=settings)
    assert {m.name for t in (1, 2, 3, 4) for m in models_for(topology, t)} == {
        "ollama/llama3.1"}


@pytest.mark.parametrize(("text", "complaint"), [
    ("tiers: {1: [a/b]}\nactors: {}\n", "tiers [2, 3, 4] have no model"),
    ("tiers: {1: [a], 2: [a], 3: [a], 4: [a]}\nactors: {wizard: {}}\n", "unknown actors"),
    ("tiers: [\n", "not valid YAML"),
    ("tiers: {1: [a], 2: [a], 3: [a], 4: [a], 5: [a]}\nactors: {}\n", "tiers [5] do not exist"),
    ("tiers: {1: [a], 2: [a], 3: [a], 4: [a]}\nactors: {consolidator: {tier: 3}}\n",
     "actors ['consolidator']: `tier` is read only for"),
])
def test_a_bad_topology_says_what_is_wrong(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        load_topology(path)


def test_a_value_out_of_bounds_is_refused_by_its_field(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text("tiers: {1: [a], 2: [a], 3: [a], 4: [a]}\nactors: {planner: {replicas: -1}}\n")
    with pytest.raises(ConfigError) as caught:
        load_topology(path)
    cause = caught.value.__cause__  # pydantic's words are its own: its error locations are not
    assert isinstance(cause, ValidationError)
    assert [e["loc"] for e in cause.errors()] == [("actors", "planner", "replicas")]


def test_a_missing_topology_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read topology"):
        load_topology(tmp_path / "nope.yaml")


def test_the_topology_in_the_current_directory_is_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import DEFAULT_TOPOLOGY

    monkeypatch.delenv("SB_TOPOLOGY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().topology == DEFAULT_TOPOLOGY  # none here: the shipped one
    (tmp_path / "topology.yaml").write_text(DEFAULT_TOPOLOGY.read_text())
    assert Settings().topology == (tmp_path / "topology.yaml").resolve()
    monkeypatch.setenv("SB_TOPOLOGY", str(DEFAULT_TOPOLOGY))
    assert Settings().topology == DEFAULT_TOPOLOGY  # the variable wins


def test_every_tier_the_shipped_topology_sets_is_read() -> None:
    from core.config import TIERED_ACTORS

    for role, spec in TOPOLOGY.actors.items():
        assert "tier" not in spec.model_fields_set or role in TIERED_ACTORS, role
