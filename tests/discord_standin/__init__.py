"""A local stand-in of Discord's gateway and REST API, for the genuine discord.py client.

Use ``async with DiscordStandIn() as standin:`` (or the helpers in
``tests.discord_standin.fixtures``); see ``_standin.py`` for what it records. Buttons:
``standin.click_button(channel_id, message_id, user_id, custom_id)`` (``endpoint=HttpEndpoint``
for an app with an Interactions Endpoint URL); ``_components.py`` for the rules they follow.
"""

from ._interactions import HttpEndpoint, signed_headers
from ._records import Bot, Edit, ReactionRecord
from ._standin import DiscordStandIn

__all__ = ["Bot", "DiscordStandIn", "Edit", "HttpEndpoint", "ReactionRecord", "signed_headers"]
