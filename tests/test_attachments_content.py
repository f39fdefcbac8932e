"""Attachments in the model's user message (``actors.attachments``) and images reaching only
models with vision (``modelcall._vision``), on the direct path and litellm's, against the
OpenAI stand-in, which validates image parts like the real API and refuses them to a model
without vision."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import pytest
from openai_standin import DEFAULT_KEY, Answer, ChatRequest, OpenAIStandin

from actors.attachments import (
    MAX_IMAGE_BYTES,
    MAX_TEXT_CHARS,
    image_mime,
    restore_images,
    user_content,
)
from actors.runs import pack_messages, unpack_messages
from core.config import ModelSpec
from core.errors import ArtifactNotFoundError
from modelcall import close_sessions, complete, supports_vision
from protocol import Attachment

KEY_VAR = "SB_TEST_VISION_KEY"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40


def _reader(files: dict[str, bytes]) -> Any:
    async def read(path: str) -> bytes:
        if path not in files:
            raise ArtifactNotFoundError(f"no {path}")
        return files[path]
    return read


def _att(name: str, content_type: str = "", path: str | None = None) -> Attachment:
    return Attachment(name=name, content_type=content_type,
                      path=name if path is None else path)


async def test_a_python_file_is_inlined_in_a_fence_naming_it() -> None:
    source = b"def add(a, b):\n    return a + b  # ```tricky```\n"
    content = await user_content("review this", [_att("add.py")],
                                 _reader({"add.py": source}))
    assert isinstance(content, str)
    assert content.startswith("review this\n\n📎 Attached file `add.py`:\n````\n")
    assert "def add(a, b):" in content and content.endswith("\n````")


async def test_text_is_bounded_and_bad_bytes_are_replaced() -> None:
    long = ("x" * (MAX_TEXT_CHARS + 500)).encode()
    content = await user_content("", [_att("notes.txt", "text/plain"), _att("bad.md")],
                                 _reader({"notes.txt": long, "bad.md": b"ok \xff\xfe end"}))
    assert isinstance(content, str)
    assert "x" * MAX_TEXT_CHARS + "\n```" in content and "x" * (MAX_TEXT_CHARS + 1) not in content
    assert f"(cut at {MAX_TEXT_CHARS:,} characters)" in content
    assert "ok \ufffd\ufffd end" in content


async def test_an_image_by_its_bytes_becomes_an_image_part_after_its_line() -> None:
    # Declared as text/plain, named .dat: the bytes decide.
    content = await user_content("what is this?", [_att("shot.dat", "text/plain")],
                                 _reader({"shot.dat": PNG}))
    assert isinstance(content, list)
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["text"] == "📎 Image `shot.dat` attached (workspace path `shot.dat`)."
    url = content[2]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == PNG


async def test_hostile_or_missing_attachments_are_lines_never_failures() -> None:
    files = {"fake.png": b"<html>not an image</html>", "big.jpg": JPEG + b"\x00" * MAX_IMAGE_BYTES,
             "blob.bin": b"\x00\x01\x02", "nul.txt": b"text\x00with a NUL"}
    attachments = [_att("fake.png", "image/png"), _att("big.jpg", "image/jpeg"),
                   _att("blob.bin"), _att("nul.txt", "text/plain"), _att("gone.py"),
                   _att("never.py", path="")]
    content = await user_content("", attachments, _reader(files))
    assert isinstance(content, str)
    lines = content.split("\n\n")
    assert "claims to be an image but is not a PNG, JPEG, GIF or WebP" in lines[0]
    assert "`big.jpg` attached (workspace path `big.jpg`). It is over 5 MiB" in lines[1]
    assert lines[2] == "📎 `blob.bin` attached (3 bytes), in the workspace at `blob.bin`."
    assert lines[3] == "📎 `nul.txt` attached (15 bytes), in the workspace at `nul.txt`."
    assert "`gone.py` was attached (workspace path `gone.py`) but could not be read" in lines[4]
    assert "`never.py` was attached but not stored" in lines[5]
    assert await user_content("plain", [], None) == "plain"
    assert "not stored" in str(await user_content("x", [_att("a.py")], None))


def test_image_types_by_magic_bytes() -> None:
    assert image_mime(PNG) == "image/png"
    assert image_mime(JPEG) == "image/jpeg"
    assert image_mime(b"GIF89a....") == "image/gif"
    assert image_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_mime(b"RIFF\x00\x00\x00\x00WAVE") == ""
    assert image_mime(b"") == ""


def test_which_models_have_vision() -> None:
    assert supports_vision(ModelSpec(name="openai/gpt-4o"))
    assert not supports_vision(ModelSpec(name="openai/gpt-3.5-turbo"))
    assert not supports_vision(ModelSpec(name="openai/some-unknown-model"))
    assert supports_vision(ModelSpec(name="openai/some-unknown-model", vision=True))
    assert not supports_vision(ModelSpec(name="openai/gpt-4o", vision=False))
    assert not supports_vision(ModelSpec(name="offline/tier-2"))


def test_a_checkpoint_keeps_the_image_line_not_its_bytes() -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "text", "text": "📎 Image `a.png` ..."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    [kept] = json.loads(zlib.decompress(pack_messages(messages)))
    assert kept["content"] == "see\n📎 Image `a.png` ..."


async def test_a_resumed_run_gets_its_request_images_back() -> None:
    """A run resumed from its checkpoint (after an approval, a crash, the person's answer)
    shows the model the request's image again, read anew from the workspace."""
    read = _reader({"shot.png": PNG})
    attachments = [_att("shot.png", "image/png"), _att("notes.txt", "text/plain")]
    first = await user_content("what broke?", attachments, read)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "earlier question"},
        {"role": "user", "content": first}, {"role": "assistant", "content": "let me look"}]
    resumed = unpack_messages(pack_messages(messages))
    assert isinstance(resumed[2]["content"], str)
    assert await restore_images(resumed, "what broke?", attachments, read)
    assert resumed[2]["content"] == first and resumed[1]["content"] == "earlier question"
    # No store, no image, or a conversation without that message: nothing changes.
    assert not await restore_images(resumed[:2], "what broke?", attachments, read)
    assert not await restore_images(resumed, "what broke?", attachments, None)
    assert not await restore_images(resumed, "x", [_att("notes.txt", "text/plain")], read)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(KEY_VAR, DEFAULT_KEY)
    async with OpenAIStandin(models=("gpt-4o", "gpt-3.5-turbo", "house-model"),
                             vision_models=("gpt-4o", "house-model")) as running:
        yield running
    await close_sessions()


@pytest.mark.parametrize("transport", ["auto", "litellm"])
async def test_images_reach_a_vision_model_and_the_others_get_the_line(
        server: OpenAIStandin, transport: str) -> None:
    seen: list[ChatRequest] = []

    def brain(request: ChatRequest) -> Answer:
        seen.append(request)
        return Answer(text=f"{len(request.images)} image(s)")

    server.brain = brain
    content = await user_content("what is in the screenshot?", [_att("shot.png")],
                                 _reader({"shot.png": PNG}))
    messages = [{"role": "user", "content": content}]
    for name, vision, expected in [("gpt-4o", None, "1 image(s)"),
                                   ("gpt-3.5-turbo", None, "0 image(s)"),
                                   ("house-model", True, "1 image(s)")]:
        spec = ModelSpec(name=f"openai/{name}", api_base=server.base_url, api_key_env=KEY_VAR,
                         transport=transport, vision=vision)
        reply = await complete(spec, messages)
        assert reply.text == expected, name
    with_image, without, house = seen
    assert with_image.images[0]["url"] == content[1 + 1]["image_url"]["url"]  # type: ignore[index]
    assert without.messages[0]["content"] == (
        "what is in the screenshot?\n📎 Image `shot.png` attached (workspace path `shot.png`).")
    assert house.images and all(r.status == 200 for r in server.requests)


async def test_the_standin_refuses_bad_images_like_the_api(server: OpenAIStandin) -> None:
    from core.errors import ModelRejectedError

    spec = ModelSpec(name="openai/gpt-4o", api_base=server.base_url, api_key_env=KEY_VAR)
    for url in ["data:image/png;base64,PGh0bWw+", "data:image/png;base64,%%%",
                "file:///etc/passwd"]:
        bad = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]
        with pytest.raises(ModelRejectedError):
            await complete(spec, bad)
    assert [r.status for r in server.requests] == [400, 400, 400]
