"""The one owner of per-request state: what the bot knows about each request it sent (who
asked, the message answers attach to, the session, the thread, the status message and whether
it shows the answer streaming) from the moment the request goes out until its answer is posted.

The bot opens a request's state as it sends the request and drops it when the request did not
go out; the poster reads it, shows progress through it and finishes it when the answer comes.
Nothing else keeps a request's state or changes it."""

from __future__ import annotations

import discord

from gateway.discord._inbound import session_of_message
from gateway.discord._status import RequestState, StatusEditor
from protocol import ChatMessage


def _thread_of(message: discord.Message) -> discord.Thread | None:
    """Where a request's answers go: the thread it was said in, else the thread the bot
    started from it (Discord's message object names it, ``thread``), else none."""
    if isinstance(message.channel, discord.Thread):
        return message.channel
    return message.thread


class Requests:
    """Request message id (the person's message, or the bot's answer to a slash command) →
    ``RequestState``; status messages are edited through one ``StatusEditor``.

    ``len``, ``in`` and truth tell how many requests are kept, and whether one is.

    Args:
        edit_interval_s: at most one status edit per request per this many seconds.
    """

    def __init__(self, edit_interval_s: float) -> None:
        self._states: dict[str, RequestState] = {}
        self._status = StatusEditor(edit_interval_s)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._states

    def get(self, message_id: str) -> RequestState | None:
        """The state of request ``message_id``, or None when it is not kept."""
        return self._states.get(message_id)

    def open(self, request: ChatMessage, anchor: discord.Message) -> RequestState:
        """Keep the state of ``request`` as it goes out; answers attach to ``anchor`` (in its
        thread when it is in one)."""
        state = RequestState(anchor, request.session, thread=_thread_of(anchor),
                             user_id=request.user_id, text=request.text)
        self._states[request.message_id] = state
        return state

    def restore(self, message_id: str, message: discord.Message) -> RequestState:
        """Keep the state of request ``message_id`` rebuilt from its ``message`` fetched from
        Discord (its state was lost: the gateway restarted)."""
        state = RequestState(message, session_of_message(message), thread=_thread_of(message),
                             user_id=str(message.author.id))
        self._states[message_id] = state
        return state

    def drop(self, message_id: str) -> None:
        """Forget request ``message_id`` (it did not go out); no-op when it is not kept."""
        self._states.pop(message_id, None)

    def thread_opened(self, state: RequestState, thread: discord.Thread) -> None:
        """The bot opened ``thread`` for the request: what follows is posted there."""
        state.thread = thread

    async def show_progress(self, state: RequestState, text: str, *, streamed: bool) -> None:
        """Show ``text`` in the request's status message (posted by the first call, then
        edited at most once per interval); ``streamed``: it is the answer so far.

        Raises:
            discord.HTTPException: posting the first status message failed.
            TimeoutError: Discord did not answer within ``REST_TIMEOUT_S``.
        """
        state.streamed = streamed
        await self._status.show(state, text)

    async def finish(self, message_id: str) -> None:
        """Request ``message_id`` is answered: show its latest status text now (before the
        answer is posted; a failed edit is logged) and forget it. No-op when it is not kept."""
        state = self._states.get(message_id)
        if state is None:
            return
        await self._status.finish(state)
        self._states.pop(message_id, None)

    def close(self) -> None:
        """Cancel every scheduled status edit (the bot is closing)."""
        for state in self._states.values():
            self._status.cancel(state)
