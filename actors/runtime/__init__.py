"""The actor runtime: base actor, JetStream dispatch (ack / nak / term / dead-letter), pull
consumer, session store, tracing, and the loop that runs one replica."""

from actors.runtime._actor import Actor, MessageContext, Services, handler
from actors.runtime._dispatch import Dispatcher, waiting_request
from actors.runtime._pull import PullConsumer
from actors.runtime._service import run_actor
from actors.runtime._sessions import SessionStore

__all__ = [
    "Actor",
    "Dispatcher",
    "MessageContext",
    "PullConsumer",
    "Services",
    "SessionStore",
    "handler",
    "run_actor",
    "waiting_request",
]
