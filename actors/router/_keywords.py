"""The keyword rules: the router's last fallback (and what the offline model answers with).

Pure and deterministic. In order, the first that applies decides:

1. No words and no attachment: do not respond.
2. A BRANCH trigger phrase (docs/design.md#flows lists them: "multiple solutions",
   "different ways", "explore options", ...): BRANCH, architect.
3. The role: the first rule of ``_ROLES`` with a matching word (whole words, so "tables"
   does not mean "table" and "README" outranks "table of contents"); a message that starts
   with ``run`` / ``execute`` or holds a command in backticks goes to the command executor
   unless it names a language to write code in.
4. The flow: a request for work (an action verb such as write, create, fix, deploy) is
   SEQUENTIAL — unless it reads as a question ("how do I ...?", "what is ...", "just the
   idea", "explain"), which is SIMPLE; social or general chat is SIMPLE with the bot's
   profile role (researcher without one).
5. Complexity: ``complex`` for whole-system words or over 80 words, ``simple`` up to 12
   words, ``medium`` otherwise.
"""

from __future__ import annotations

import re

from actors.router._types import Route
from protocol import AGENT_ROLES, Complexity, Flow, TaskType

BRANCH_TRIGGERS: tuple[str, ...] = (
    "different approaches", "pros and cons", "brainstorm", "compare approaches", "tradeoffs",
    "trade-offs", "trade offs", "which approach", "multiple solutions", "different ways",
    "explore options",
)

# (task type, role, words) in priority order: the first rule with a matching word wins.
# Words are matched on word boundaries; a trailing "*" matches any ending.
_ROLES: tuple[tuple[TaskType, str, tuple[str, ...]], ...] = (
    (TaskType.REVIEW, "code_reviewer", ("review", "code review", "critique")),
    (TaskType.DOCS, "documentation_writer", (
        "readme", "documentation", "docstring*", "document", "docs", "tutorial",
        "table of contents", "changelog",
    )),
    (TaskType.DEVOPS, "devops_engineer", (
        "docker*", "kubernetes", "k8s", "terraform", "helm", "ci/cd", "pipeline*", "deploy*",
        "nginx", "ansible", "github actions",
    )),
    (TaskType.DATABASE, "dba", (
        "sql", "database*", "postgres*", "mysql", "sqlite", "query", "queries", "index",
        "indexes", "schema", "migration*", "table", "tables",
    )),
    (TaskType.ARCHITECTURE, "architect", (
        "architecture", "architect", "system design", "design a system", "microservice*",
        "scalab*",
    )),
    (TaskType.CODING, "js_ts_coder", (
        "javascript", "typescript", "node.js", "nodejs", "react", "js", "ts", "npm", "deno",
        "vue",
    )),
    (TaskType.CODING, "python_coder", (
        "python", "function*", "script*", "class", "code", "implement*", "refactor*", "bug*",
        "fix", "test*", "program*", "algorithm*", "regex", "parse*", r"\w+\.py",
    )),
    (TaskType.COMMAND, "command_executor", (
        "execute", "kubectl", "bash", "shell command", "terminal", "ls",
    )),
    (TaskType.RESEARCH, "researcher", (
        "research", "search", "find out", "look up", "compare", "investigate",
    )),
)
_PATTERNS = tuple(
    (task_type, role, re.compile(
        r"(?<![\w/.])(" + "|".join(
            w[:-1] + r"\w*" if w.endswith("*") else (w if w.startswith("\\") else re.escape(w))
            for w in words) + r")(?![\w/])", re.IGNORECASE))
    for task_type, role, words in _ROLES
)
_COMMAND_FIRST = re.compile(r"^\s*(run|execute)\b|`[^`\n]+`", re.IGNORECASE)
_LANGUAGE_WORK = re.compile(r"\b(write|create|implement|build|generate)\b.*\b(python|script|"
                            r"javascript|typescript|function|\w+\.(py|js|ts))\b", re.IGNORECASE)
_ACTION = re.compile(
    r"\b(write|create|build|implement|make|generate|refactor|fix|add|set up|setup|deploy|"
    r"run|execute|migrate|convert|scaffold|debug|review)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"^\s*(what|why|how|when|who|which|is|are|can|could|does|do|should|explain|describe|"
    r"tell me)\b|\?\s*$|\?\s+\S|\bjust the idea\b|\bin theory\b|\bexplain\b",
    re.IGNORECASE,
)
_SOCIAL = re.compile(
    r"^\s*(hi|hello|hey|yo|thanks|thank you|good (morning|evening|night)|how are you|"
    r"sup|gm|ok|okay|cool|nice|bye)\b",
    re.IGNORECASE,
)
_COMPLEX = re.compile(
    r"\b(entire|whole|full|complete|production|system|multiple|several|end[- ]to[- ]end|"
    r"framework|migrate|architecture|refactor the)\b",
    re.IGNORECASE,
)
_NO_CONTENT = re.compile(r"^[\W_]*$")


def complexity_of(text: str) -> Complexity:
    """Complexity by scope words and length (rule 5 of the module docstring)."""
    words = len(text.split())
    if _COMPLEX.search(text) or words > 80:
        return Complexity.COMPLEX
    if words <= 12:
        return Complexity.SIMPLE
    return Complexity.MEDIUM


def _role_of(text: str) -> tuple[TaskType, str, str] | None:
    """(task type, role, matched word) by rule 3, or None."""
    if _COMMAND_FIRST.search(text) and not _LANGUAGE_WORK.search(text):
        word = _COMMAND_FIRST.search(text)
        return TaskType.COMMAND, "command_executor", (word.group(0) if word else "run").strip()
    for task_type, role, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            return task_type, role, match.group(0)
    return None


def keyword_route(text: str, *, profile: str = "", attachments: bool = False) -> Route:
    """Route a message by the keyword rules (module docstring).

    Args:
        text: the person's message.
        profile: the bot's default role for general chat ("" or not a role: researcher).
        attachments: the message carries files (a message of only files is answered).
    """
    stripped = text.strip()
    if (not stripped or _NO_CONTENT.match(stripped)) and not attachments:
        reason = "empty message" if not stripped else "no words in the message"
        return Route(respond=False, reason=reason, source="keywords")
    lowered = f" {text.lower()} "
    trigger = next((t for t in BRANCH_TRIGGERS if t in lowered), None)
    if trigger:
        return Route(flow=Flow.BRANCH, task_type=TaskType.BRAINSTORM, role="architect",
                     complexity=Complexity.MEDIUM, reason=f"branch trigger {trigger!r}",
                     source="keywords")
    found = _role_of(text)
    if found is not None:
        task_type, role, word = found
        if _ACTION.search(text) and not _QUESTION.search(text):
            return Route(flow=Flow.SEQUENTIAL, task_type=task_type, role=role,
                         complexity=complexity_of(text), reason=f"action on {word!r}",
                         source="keywords")
        return Route(flow=Flow.SIMPLE, task_type=TaskType.QUESTION, role=role,
                     reason=f"question about {word!r}", source="keywords")
    role = profile if profile in AGENT_ROLES else "researcher"
    if _SOCIAL.match(text):
        return Route(task_type=TaskType.SOCIAL, role=role, reason="social", source="keywords")
    task_type = TaskType.QUESTION if _QUESTION.search(text) else TaskType.SOCIAL
    return Route(task_type=task_type, role=role, reason="general chat", source="keywords")
