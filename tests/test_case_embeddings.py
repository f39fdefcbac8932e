"""Case ranking by embeddings through litellm (``cases.embedding_model``), against the local
OpenAI-compatible server's ``/v1/embeddings``."""

from __future__ import annotations

import pytest
from openai_standin import DEFAULT_KEY, OpenAIStandin

from actors.router import CaseIndex
from core.config import ModelSpec
from core.errors import ModelRejectedError
from modelcall import embed
from protocol import Case

pytestmark = pytest.mark.usefixtures("close_model_sessions")

KEY_VAR = "SB_TEST_EMBED_KEY"


def _spec(server: OpenAIStandin, model: str = "text-embedding-3-small") -> ModelSpec:
    return ModelSpec(name=f"openai/{model}", api_base=server.base_url, api_key_env=KEY_VAR)


async def test_cases_are_ranked_by_the_cosine_of_their_embeddings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, DEFAULT_KEY)
    async with OpenAIStandin(models=("text-embedding-3-small",)) as server:
        spec = _spec(server)
        index = CaseIndex()
        tasks = {"csv": "parse the orders csv file and total it by customer",
                 "k8s": "deploy the web service to the kubernetes cluster with helm"}
        for case_id, task in tasks.items():
            index.put(Case(case_id=case_id, session="s", task=task, role="python_coder",
                           embedding=await embed(spec, task)))
        query = await embed(spec, "total the customer orders from a csv file")
        found = index.similar("unrelated words entirely", k=2, min_similarity=0.3,
                              embedding=query, min_cosine=0.5)
        assert [s.case.case_id for s in found] == ["csv"]
        assert 0.5 <= found[0].similarity <= 1.0
        assert server.requests[-1].path == "/v1/embeddings"
        # Without an embedding the lexical ranking answers.
        lexical = index.similar("deploy to kubernetes with helm", k=2, min_similarity=0.2)
        assert [s.case.case_id for s in lexical] == ["k8s"]


async def test_an_unknown_embedding_model_is_rejected_for_good(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, DEFAULT_KEY)
    async with OpenAIStandin(models=("text-embedding-3-small",)) as server:
        with pytest.raises(ModelRejectedError, match="does not know this model"):
            await embed(_spec(server, "no-such-embedder"), "hello")
