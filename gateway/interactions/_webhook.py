"""Answers to deferred interactions through Discord's interaction webhooks: edit the original
response (``PATCH /webhooks/{application id}/{token}/messages/@original``) and add follow-ups
(``POST /webhooks/{application id}/{token}``), valid 15 minutes after the interaction
(https://discord.com/developers/docs/interactions/receiving-and-responding, "Followup
Messages"). No bot token: the interaction token in the path authorises the call."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from gateway.errors import GatewayError
from protocol import FileBlob

_log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 15.0
DEFAULT_API_BASE = "https://discord.com/api/v10"


class InteractionWebhooks:
    """Edits and follow-ups of interactions.

    Args:
        session: the HTTP session (closed by its owner).
        api_base: Discord's REST base (``DISCORD_API_BASE``).
    """

    def __init__(self, session: aiohttp.ClientSession, api_base: str | None = None) -> None:
        self.session = session
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")

    async def edit_original(self, app_id: str, token: str, content: str) -> None:
        """Replace the original (deferred) response's text.

        Raises:
            GatewayError: Discord answered an error or did not answer within 15 s.
        """
        url = f"{self.api_base}/webhooks/{app_id}/{token}/messages/@original"
        await self._call("PATCH", url, {"content": content}, ())

    async def follow_up(self, app_id: str, token: str, content: str | None,
                        files: tuple[FileBlob, ...] = (),
                        components: list[dict[str, Any]] | None = None) -> None:
        """Post one more message for the interaction (text, up to 10 files, and message
        ``components``: action rows of buttons, https://discord.com/developers/docs/
        interactions/message-components).

        Raises:
            GatewayError: Discord answered an error or did not answer within 15 s.
        """
        body: dict[str, Any] = {"content": content} if content else {}
        if components:
            body["components"] = components
        await self._call("POST", f"{self.api_base}/webhooks/{app_id}/{token}", body, files)

    async def _call(self, method: str, url: str, body: dict[str, Any],
                    files: tuple[FileBlob, ...]) -> None:
        kwargs: dict[str, Any]
        if files:
            form = aiohttp.FormData(quote_fields=False)
            form.add_field("payload_json", json.dumps(body), content_type="application/json")
            for i, blob in enumerate(files):
                form.add_field(f"files[{i}]", blob.data, filename=blob.name,
                               content_type="application/octet-stream")
            kwargs = {"data": form}
        else:
            kwargs = {"json": body}
        try:
            async with asyncio.timeout(WEBHOOK_TIMEOUT_S), \
                    self.session.request(method, url, **kwargs) as response:
                if response.status >= 300:
                    text = await response.text()
                    msg = f"{method} interaction webhook: {response.status} {text[:200]}"
                    raise GatewayError(msg)
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"{method} interaction webhook failed: {exc or type(exc).__name__}"
            raise GatewayError(msg) from exc
