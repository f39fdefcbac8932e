"""Hosted agents that back a role instead of its tier's models (docs/design.md#models).

A role is backed by one when its ``actors.<role>.agent`` is set in ``topology.yaml``
(``Topology.hosted_agent`` decides); the role actor then sends the person's message to the
agent and relays the agent's stream as it does a model's. So far one kind: an Amazon Bedrock
agent through aioboto3's ``invoke_agent`` (``modelcall.hosted._bedrock``). Importing this package
imports aioboto3: the agent actor imports it only for a backed role.
"""

from modelcall.hosted._bedrock import AgentAnswer, close_clients, invoke_agent
from modelcall.hosted._session import bedrock_session_id
from modelcall.hosted._trace import TraceSummary

__all__ = ["AgentAnswer", "TraceSummary", "bedrock_session_id", "close_clients", "invoke_agent"]
