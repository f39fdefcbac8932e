"""The case base in memory: ranking past runs by similarity, and what they teach (pure).

Ranking: BM25 (Robertson & Zaragoza 2009, as ``rank_bm25.BM25Okapi`` computes it) over the
cases' task texts orders the candidates; a candidate counts as similar when the Jaccard
overlap of its word set with the new task's is at least ``min_similarity`` (BM25 scores
are not comparable between queries, an overlap is). Words: lower-cased ``\\w+`` of two or
more characters, without English stop words.

With an embedding model configured (``cases.embedding_model``), cases that carry an embedding
are ranked by cosine similarity instead, and count as similar from
``cases.min_embedding_similarity``; cases without one keep the lexical measure.

The starting tier learns (``learned_tier``): of up to ``LEARN_FROM`` most similar cases, a
new run starts at the least tier one of them succeeded at (its final tier), so a run that
was started higher than it needed (by a 👎, ``/model``) does not keep later runs up there,
and a success at a lower tier brings the start back down. When none of them succeeded, one
above the highest tier they failed at (at most 4: ``needed_tier``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from actors.router._types import TierChoice
from protocol import Case

LEARN_FROM = 5
"""Similar cases whose needed tiers decide a starting tier."""

_WORD = re.compile(r"\w{2,}")
_STOP = frozenset([
    "a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on",
    "at", "by", "for", "with", "from", "as", "is", "are", "was", "were", "be", "been", "it",
    "its", "this", "that", "these", "those", "i", "me", "my", "you", "your", "we", "our",
    "they", "them", "he", "she", "his", "her", "please", "can", "could", "would", "should",
    "will", "just", "some", "any", "all", "into", "out", "up", "so", "do", "does", "did",
    "have", "has", "had", "not", "no",
])


def words(text: str) -> list[str]:
    """The words BM25 and the overlap use (module docstring)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Cosine similarity of two vectors (0 when their lengths differ or one is zero)."""
    if len(a) != len(b) or not a:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def overlap(a: set[str], b: set[str]) -> float:
    """Jaccard overlap of two word sets, 0-1 (0 when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


@dataclass(frozen=True, slots=True)
class Similar:
    """A past case and how close it is: ``similarity`` is the word overlap (0-1),
    ``score`` the BM25 score that ranked it."""

    case: Case
    similarity: float
    score: float


class CaseIndex:
    """Cases by id, ranked on demand. Holds at most ``limit`` cases (the oldest, by
    ``Case.at``, dropped first); the BM25 model is rebuilt lazily after a change."""

    def __init__(self, limit: int = 2000) -> None:
        self.limit = limit
        self._cases: dict[str, Case] = {}
        self._tokens: dict[str, list[str]] = {}
        self._words: dict[str, set[str]] = {}
        self._ids: list[str] = []
        self._bm25: Any = None

    def __len__(self) -> int:
        return len(self._cases)

    def get(self, case_id: str) -> Case | None:
        return self._cases.get(case_id)

    def put(self, case: Case) -> None:
        """Add or replace a case (a newer value of the same id replaces the older)."""
        self._cases[case.case_id] = case
        tokens = self._tokens[case.case_id] = words(case.task) or ["_"]
        self._words[case.case_id] = set(tokens)
        self._bm25 = None
        if len(self._cases) > self.limit:
            oldest = min(self._cases.values(), key=lambda c: c.at)
            self.remove(oldest.case_id)

    def remove(self, case_id: str) -> None:
        if self._cases.pop(case_id, None) is not None:
            del self._words[case_id], self._tokens[case_id]
            self._bm25 = None

    def _model(self) -> Any:
        if self._bm25 is None and self._cases:
            from rank_bm25 import BM25Okapi

            self._ids = list(self._cases)
            self._bm25 = BM25Okapi([self._tokens[i] for i in self._ids])
        return self._bm25

    def similar(self, text: str, *, k: int, min_similarity: float,
                succeeded_only: bool = False, exclude: str = "",
                embedding: tuple[float, ...] = (), min_cosine: float = 0.75) -> list[Similar]:
        """Up to ``k`` cases similar to ``text``, most similar first.

        Args:
            text: the new task.
            k: at most this many.
            min_similarity: least word overlap (0-1) to count.
            succeeded_only: only cases whose outcome is ``succeeded``.
            exclude: a case id to leave out (the run's own case).
            embedding: the task's embedding; cases with one are then ranked by cosine.
            min_cosine: least cosine similarity to count (with ``embedding``).
        """
        if embedding:
            by_vector = self._by_vector(embedding, min_cosine, succeeded_only, exclude)
            if by_vector:
                return by_vector[:k]
        query = words(text)
        model = self._model()
        if model is None or not query or k <= 0:
            return []
        wanted = set(query)
        scores = model.get_scores(query)
        ranked = sorted(range(len(self._ids)), key=lambda i: float(scores[i]), reverse=True)
        found: list[Similar] = []
        for i in ranked:
            case = self._cases[self._ids[i]]
            if case.case_id == exclude or (succeeded_only and not case.succeeded):
                continue
            similarity = overlap(wanted, self._words[case.case_id])
            if similarity >= min_similarity:
                found.append(Similar(case, similarity, float(scores[i])))
        found.sort(key=lambda s: (s.similarity, s.score, s.case.at), reverse=True)
        return found[:k]


    def _by_vector(self, embedding: tuple[float, ...], min_cosine: float,
                   succeeded_only: bool, exclude: str) -> list[Similar]:
        found = []
        for case in self._cases.values():
            if not case.embedding or case.case_id == exclude or (
                    succeeded_only and not case.succeeded):
                continue
            similarity = cosine(embedding, case.embedding)
            if similarity >= min_cosine:
                found.append(Similar(case, similarity, similarity))
        found.sort(key=lambda s: (s.similarity, s.case.at), reverse=True)
        return found


def needed_tier(case: Case) -> int:
    """The tier ``case`` says its task needs: its final tier when it succeeded, one above it
    (at most 4) when it failed."""
    return case.final_tier if case.succeeded else min(4, case.final_tier + 1)


def learned_tier(similar: list[Similar], *, session: str = "") -> TierChoice | None:
    """The starting tier similar cases teach (module docstring), or None without any.

    Args:
        similar: the similar cases, most similar first.
        session: the new run's session: when the tier comes from failed cases and one of
            them failed by a 👎 in this session, the choice ``counts_feedback``.
    """
    cases = [s.case for s in similar[:LEARN_FROM]]
    if not cases:
        return None
    escalated = sum(c.escalations > 0 for c in cases)
    plural = "s" if len(cases) != 1 else ""
    succeeded = sorted(c.final_tier for c in cases if c.succeeded)
    if succeeded:
        return TierChoice(tier=succeeded[0], source="case", reason=(
            f"the least tier {len(cases)} similar past run{plural} succeeded at (of "
            f"{succeeded}; {len(cases) - len(succeeded)} failed, {escalated} escalated)"))
    highest = max(c.final_tier for c in cases)
    rated = any(c.feedback < 0 and c.session == session for c in cases) if session else False
    return TierChoice(tier=min(4, highest + 1), source="case", counts_feedback=rated, reason=(
        f"{len(cases)} similar past run{plural} failed, at tiers up to {highest}"
        f"{' (one by a 👎 here)' if rated else ''}; {escalated} escalated"))


def case_lines(similar: list[Similar]) -> str:
    """The cases as the planner is shown them: task, role, outcome, tiers, plan."""
    blocks = []
    for s in similar:
        c = s.case
        plan = "; ".join(c.plan[:6]) or "(no plan kept)"
        scores = (f", scores {c.scores.task_completion}/{c.scores.code_quality}/"
                  f"{c.scores.efficiency}") if c.scores else ""
        blocks.append(
            f"- Task: {' '.join(c.task.split())[:200]}\n"
            f"  Role {c.role}, {c.outcome} in {c.turns} turns at tier {c.final_tier} "
            f"({c.escalations} escalations{scores}); similarity {s.similarity:.2f}\n"
            f"  Plan that was followed: {plan[:500]}")
    return "\n".join(blocks)
