"""The drain sequence on a scripted chat service: refuse new work, wait for the running streams, then end them."""

from __future__ import annotations

import asyncio

from gateway.drain import Drain


class ScriptedChat:
    """A test double of ChatService's drain hooks: ``idle_after`` seconds until no stream runs (None: never)."""

    def __init__(self, idle_after: float | None) -> None:
        self.idle_after = idle_after
        self.draining = False
        self.aborted: str | None = None
        self.active_streams = 3

    def begin_drain(self) -> None:
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        if self.aborted is not None:
            return True
        if self.idle_after is not None and self.idle_after <= timeout_s:
            await asyncio.sleep(self.idle_after)
            return True
        await asyncio.sleep(timeout_s)
        return False

    def abort_all(self, reason: str) -> int:
        self.aborted = reason
        return self.active_streams


class Box:
    def __init__(self, chat: ScriptedChat | None) -> None:
        self.chat = chat


async def test_streams_that_finish_in_time_are_not_aborted():
    """Idle before the deadline: no stream is ended early."""
    chat = ScriptedChat(idle_after=0.01)
    drain = Drain(Box(chat), deadline_s=1)
    drain.begin()
    assert drain.draining and chat.draining
    assert drain.task is not None
    await drain.task
    assert chat.aborted is None


async def test_streams_still_running_at_the_deadline_are_aborted():
    """Past the deadline, every running stream is ended with the drain's reason."""
    chat = ScriptedChat(idle_after=None)
    drain = Drain(Box(chat), deadline_s=0.05)
    drain.begin()
    assert drain.task is not None
    await drain.task
    assert chat.aborted and "shutting down" in chat.aborted


async def test_begin_is_idempotent_and_safe_before_the_chat_service_exists():
    """A second signal does not start a second drain; a process without a chat service just drains nothing."""
    drain = Drain(Box(None), deadline_s=1)
    drain.begin()
    first = drain.task
    drain.begin()
    assert drain.task is first
    assert first is not None
    await first
