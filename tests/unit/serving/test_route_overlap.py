"""Classification overlaps the engine's prefill when no domain's policy would change the worker request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.classify.classifier import Classification
from gateway.policy.rules import Sentences
from gateway.policy.schema import Policy
from gateway.policy.store import ActivePolicy
from gateway.policy.thinking import ThinkingSpec
from gateway.serving.call import ChatCall
from gateway.serving.chat import ChatService
from gateway.serving.routing import Router
from gateway.worker.protocol import ChatMessage, SamplingParams, TokenStream
from tests.unit.serving.scripted import ScriptedWorker, events


@dataclass
class Names:
    names: tuple[str, ...] = ("factual", "general")


@dataclass
class GatedClassifier:
    """Answers only once ``gate`` is set; records whether the worker had been asked by then."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False
    domains: Names = field(default_factory=Names)
    worker: ScriptedWorker | None = None
    worker_asked_first: bool | None = None
    answer: str = "factual"

    async def aclassify(self, query: Any) -> Classification:
        await asyncio.wait_for(self.gate.wait(), 2.0)
        assert self.worker is not None
        self.worker_asked_first = self.worker.params is not None
        if self.fail:
            raise RuntimeError("classifier down")
        return Classification(self.answer, 0.9, {self.answer: 0.9})


class TwoPolicies:
    def __init__(self, factual_max: int, general_max: int) -> None:
        self.policies = {
            "factual": Policy(domain="factual", max_tokens=factual_max, rules=(Sentences(max=3),)),
            "general": Policy(domain="general", max_tokens=general_max, rules=(Sentences(max=3),)),
        }

    def get(self, domain: str) -> ActivePolicy:
        return ActivePolicy(self.policies[domain], 1, "h", "files")


class GateOnGenerate(ScriptedWorker):
    """Opens the classifier's gate when asked to generate."""

    gate: asyncio.Event | None = None

    async def generate(self, messages: Any, params: SamplingParams) -> TokenStream:
        stream = await super().generate(messages, params)
        assert self.gate is not None
        self.gate.set()
        return stream


def setup(
    factual_max: int, general_max: int, fail: bool = False
) -> tuple[ChatService, GatedClassifier, ScriptedWorker]:
    worker = GateOnGenerate(events(["One", "."]))
    classifier = GatedClassifier(fail=fail, worker=worker)
    worker.gate = classifier.gate
    service = ChatService(worker, Router(classifier, TwoPolicies(factual_max, general_max)), max_concurrent_streams=4)
    return service, classifier, worker


def call(max_tokens: int | None = 32) -> ChatCall:
    return ChatCall(messages=[ChatMessage("user", "Who wrote it?")], max_tokens=max_tokens)


async def test_the_worker_starts_before_the_classifier_answers_when_every_policy_asks_the_same() -> None:
    """max_tokens 32 under caps of 64 and 128: the same request whatever the domain, so it goes out at once."""
    service, classifier, worker = setup(64, 128)
    run = await service.open(call(32))
    run.close()
    assert classifier.worker_asked_first is True
    assert run.route.domain == "factual" and worker.params is not None and worker.params.max_tokens == 32


async def test_the_classifier_answers_first_when_the_domain_changes_the_budget() -> None:
    """No client max_tokens: the budget is the domain's cap (64 or 128), so the worker waits for the route."""
    service, classifier, worker = setup(64, 128)
    classifier.gate.set()
    run = await service.open(call(None))
    run.close()
    assert classifier.worker_asked_first is False
    assert worker.params is not None and worker.params.max_tokens == 64 and len(worker.streams) == 1


async def test_a_classifier_failure_cancels_the_early_stream() -> None:
    """The route fails after the worker started: the stream is cancelled and the error raised."""
    service, _, worker = setup(64, 128, fail=True)
    with pytest.raises(RuntimeError, match="classifier down"):
        await service.open(call(32))
    assert len(worker.streams) == 1 and worker.streams[0].cancelled


def setup_thinking(early_start: bool) -> tuple[ChatService, GatedClassifier, ScriptedWorker]:
    """Three domains: two answer with the model's own thinking, one ("chat") with thinking off."""
    worker = GateOnGenerate(events(["One", "."]))
    classifier = GatedClassifier(worker=worker, domains=Names(("chat", "factual", "general")))
    worker.gate = classifier.gate
    policies = TwoPolicies(64, 64)
    policies.policies["chat"] = Policy(domain="chat", max_tokens=64, thinking=ThinkingSpec(mode="off"))
    router = Router(classifier, policies)
    return ChatService(worker, router, max_concurrent_streams=4, early_start=early_start), classifier, worker


async def test_with_early_start_the_most_common_request_goes_out_first() -> None:
    """Policies differ in thinking mode: with early_start the worker gets what most domains ask, at once."""
    service, classifier, worker = setup_thinking(early_start=True)
    run = await service.open(call(32))
    run.close()
    assert classifier.worker_asked_first is True and len(worker.streams) == 1
    assert worker.params is not None and worker.params.thinking == "model"


async def test_without_early_start_differing_policies_wait_for_the_route() -> None:
    """The same policies without early_start: nothing is sent before the classifier answers."""
    service, classifier, worker = setup_thinking(early_start=False)
    classifier.gate.set()
    run = await service.open(call(32))
    run.close()
    assert classifier.worker_asked_first is False and len(worker.streams) == 1


async def test_a_wrong_guess_is_cancelled_and_sent_again_with_the_routes_request() -> None:
    """The route picks the domain whose policy asks otherwise: the early stream is cancelled, the right one sent."""
    service, classifier, worker = setup_thinking(early_start=True)
    classifier.answer = "chat"
    run = await service.open(call(32))
    run.close()
    assert len(worker.streams) == 2 and worker.streams[0].cancelled
    assert worker.params is not None and worker.params.thinking == "off" and run.route.domain == "chat"
