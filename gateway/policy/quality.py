"""The ``quality`` and ``autopilot`` sections of a policy.

``quality`` names the metric by which a stopped answer is judged against the full generation of
the same request (agreement); ``autopilot`` lets the gateway re-tune the policy from sampled
full generations of live traffic while keeping agreement above ``target_agreement``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

QualityMetric = Literal["final_number", "answer_span", "code", "semantic", "prefix"]


class QualitySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    metric: QualityMetric = "prefix"
    threshold: float = 0.9  # semantic: cosine similarity at or above which two answers agree

    def check(self) -> list[tuple[str, str]]:
        if not 0.0 <= self.threshold <= 1.0:
            return [("threshold", "must be between 0 and 1")]
        return []


class AutopilotSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    target_agreement: float
    min_samples: int = 30
    mode: Literal["apply", "propose"] = "apply"

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not 0.0 < self.target_agreement <= 1.0:
            out.append(("target_agreement", "must be in (0, 1]"))
        if self.min_samples < 1:
            out.append(("min_samples", "must be >= 1"))
        return out
