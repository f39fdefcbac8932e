"""The Discord gateway: discord.py bots wired to the actors through ``gateway.bridge``."""

from gateway.discord._bot import SwitchboardBot, default_intents
from gateway.discord._endpoints import configure_discord_endpoints, current_endpoints
from gateway.discord._inbound import is_addressed, should_answer, strip_mentions, thread_name
from gateway.discord._run import discord_gateway
from gateway.discord._runner import BotRunner, origin_for
from gateway.services import ArtifactSink, BotServices

__all__ = [
    "ArtifactSink",
    "BotRunner",
    "BotServices",
    "SwitchboardBot",
    "configure_discord_endpoints",
    "current_endpoints",
    "default_intents",
    "discord_gateway",
    "is_addressed",
    "origin_for",
    "should_answer",
    "strip_mentions",
    "thread_name",
]
