"""The agentic loop's tools (docs/design.md#the-agentic-loop): files and commands inside a
session's workspace."""

from actors.tools._command import DEFAULT_MEMORY_LIMIT, command_env
from actors.tools._git import GitRepo, branch_name, check_branch_name
from actors.tools._mechanism import SANDBOX
from actors.tools._run import FilesTouched, files_touched, run_tool
from actors.tools._schemas import TOOL_NAMES, TOOL_SCHEMAS
from core.errors import SandboxUnavailableError

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "SANDBOX",
    "TOOL_NAMES",
    "TOOL_SCHEMAS",
    "FilesTouched",
    "GitRepo",
    "SandboxUnavailableError",
    "branch_name",
    "check_branch_name",
    "command_env",
    "files_touched",
    "run_tool",
]
