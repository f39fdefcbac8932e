"""Files in through the genuine discord.py bot, the Discord stand-in and ``switchboard up``: a
screenshot reaches a vision model as an image part (the OpenAI stand-in validates and records
it), a ``.py`` file reaches it inlined in the prompt."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import containing, discord_system
from openai_standin import Answer, ChatRequest, OpenAIStandin

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
KEY, KEY_VAR = "sk-test-vision-0000000000000000", "SB_TEST_VISION_KEY"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40


def brain(request: ChatRequest) -> Answer:
    if request.system_text.startswith("You are Switchboard's router."):
        return Answer.json_in_fence({"respond": True, "complexity": "simple", "flow": "simple",
                                     "task_type": "question", "role": "researcher",
                                     "reason": "a question about a file"})
    inlined = "def add(a, b):" in request.last_user_text
    return Answer(text=f"Seen: {len(request.images)} image(s), code inlined: {inlined}.")


async def test_a_screenshot_and_a_python_file_reach_the_model(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with OpenAIStandin(models=("seer",), vision_models=("seer",), api_keys=(KEY,),
                             brain=brain) as server:
        spec: dict[str, Any] = {"name": "openai/seer", "api_base": server.base_url,
                                "api_key_env": KEY_VAR, "vision": True, "timeout_s": 30}
        async with discord_system(nats_url, tmp_path, s, env={KEY_VAR: KEY},
                                  tiers={t: [spec] for t in (1, 2, 3, 4)},
                                  escalation=[], brainstorm_models=[]):
            await s.post_user_message(s.channel_id, s.alice["id"], "what is in this screenshot?",
                                      files={"screenshot.png": PNG})
            await s.wait_for(lambda: containing(s, s.channel_id, "Seen: 1 image(s)"),
                             timeout=120, what="the answer about the screenshot")
            await s.post_user_message(s.channel_id, s.alice["id"], "what does this do?",
                                      files={"add.py": b"def add(a, b):\n    return a + b\n"})
            await s.wait_for(lambda: containing(s, s.channel_id, "code inlined: True"),
                             timeout=120, what="the answer about add.py")
        answered = [r for r in server.requests if r.status == 200 and isinstance(r.body, dict)
                    and "screenshot" in str(r.body["messages"][-1]["content"])
                    and isinstance(r.body["messages"][-1]["content"], list)]
        assert answered, [r.status for r in server.requests]
        image = answered[0].body["messages"][-1]["content"][-1]["image_url"]["url"]
        assert base64.b64decode(image.split(",", 1)[1]) == PNG


async def test_a_model_without_vision_is_told_where_the_image_is(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin

    def plain_brain(request: ChatRequest) -> Answer:
        if request.system_text.startswith("You are Switchboard's router."):
            return brain(request)
        told = "Image `screenshot.png` attached (workspace path `screenshot.png`)"
        return Answer(text=f"Plain: {len(request.images)} image(s), "
                           f"told: {told in request.last_user_text}.")

    # The stand-in answers 400 to an image sent to "plain", as the API does.
    async with OpenAIStandin(models=("plain",), vision_models=(), api_keys=(KEY,),
                             brain=plain_brain) as server:
        spec: dict[str, Any] = {"name": "openai/plain", "api_base": server.base_url,
                                "api_key_env": KEY_VAR, "vision": False, "timeout_s": 30}
        async with discord_system(nats_url, tmp_path, s, env={KEY_VAR: KEY},
                                  tiers={t: [spec] for t in (1, 2, 3, 4)},
                                  escalation=[], brainstorm_models=[]):
            await s.post_user_message(s.channel_id, s.alice["id"], "what is in this screenshot?",
                                      files={"screenshot.png": PNG})
            await s.wait_for(lambda: containing(s, s.channel_id, "Plain: 0 image(s), told: True"),
                             timeout=120, what="the non-vision model's answer")
        assert all(r.status == 200 for r in server.requests)
