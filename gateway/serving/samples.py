"""Which finished requests become autopilot samples (``sample_of_run``), and what a sample records.

Serving builds the sample (it knows the run); the autopilot's store only keeps it.
"""

from __future__ import annotations

import time

from gateway.autopilot.samples import Sample, sample_tokens
from gateway.serving.outcome import Outcome
from gateway.serving.run import ChatRun


def sample_of_run(run: ChatRun, outcome: Outcome, now: float | None = None) -> Sample | None:
    """The sample of a finished sampled request, or None when what it generated is not a full generation.

    Not full: a tool call, client stop strings (the stream was cut where they matched), or a stop
    that was not generated on (the load budget's ``length`` stop).
    """
    events = run.events
    rule_stopped = outcome.full_completion_tokens is not None
    if events is None or outcome.tool_call or run.call.stop or run.route.policy is None:
        return None
    if outcome.stop_rule is not None and not rule_stopped:
        return None
    if rule_stopped:
        ended = run.stream.finish_reason
        finish = "length" if ended == "length" else "stop"
        stopped_at: int | None = max(0, outcome.completion_tokens - outcome.reasoning_tokens)
    else:
        finish = "length" if outcome.finish_reason == "length" else "stop"
        stopped_at = None
    return Sample(
        domain=run.route.domain,
        policy_version=run.route.policy_version,
        policy_hash=run.route.policy_hash,
        request_id=run.request_id,
        ts=time.time() if now is None else now,
        max_tokens=outcome.max_tokens,
        events=sample_tokens(events),
        stopped_at=stopped_at,
        stop_rule=outcome.stop_rule,
        finish_reason=finish,
    )
