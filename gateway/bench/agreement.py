"""``stopgate bench agreement``: how far two trade-off runs' answers agree (e.g. fp32 against bf16).

Reads two ``stopgate bench tradeoff --items-out`` files, joins them on ``id`` and reports per
domain the share of identical full (greedy, no rules) answers, identical policy answers, the
same final number (math) and the mean tokens of each. Run the trade-off benchmark once per
setting first (``STOPGATE_DTYPE=bfloat16 stopgate bench tradeoff ...``); each dtype has its own
generation cache, so neither run reuses the other's generations.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.policy.quality import final_number

if TYPE_CHECKING:
    from gateway.settings import Settings

SETTINGS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    a: Path = field(metadata={"help": "items of the reference run (JSON lines from bench tradeoff --items-out)"})
    b: Path = field(metadata={"help": "items of the run compared with it"})
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})


def run(options: Options, settings: Settings) -> int:
    figures = compare(_items(options.a), _items(options.b))
    text = json.dumps(figures, indent=2)
    if options.json is not None:
        options.json.write_text(text + "\n")
    print(text)
    return 0


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per domain and overall: rows in both, identical full/policy text shares, same final number."""
    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise ConfigError("the two item files have no id in common")
    groups: dict[str, list[str]] = defaultdict(list)
    for key in shared:
        groups[a[key]["domain"]].append(key)
    out: dict[str, Any] = {"rows": len(shared), "only_a": len(a.keys() - b.keys()), "only_b": len(b.keys() - a.keys())}
    out["all"] = _figures(shared, a, b)
    out["domains"] = {d: _figures(keys, a, b) for d, keys in sorted(groups.items())}
    return out


def _figures(keys: list[str], a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n = len(keys)

    def share(pred: Any) -> float:
        return round(sum(1 for k in keys if pred(a[k], b[k])) / n, 3)

    return {
        "rows": n,
        "full_identical": share(lambda x, y: x["text_full"] == y["text_full"]),
        "policy_identical": share(lambda x, y: x["text_policy"] == y["text_policy"]),
        "full_same_final_number": share(lambda x, y: final_number(x["text_full"]) == final_number(y["text_full"])),
        "tokens_full_a": round(sum(a[k]["tokens_full"] for k in keys) / n, 1),
        "tokens_full_b": round(sum(b[k]["tokens_full"] for k in keys) / n, 1),
        "tokens_policy_a": round(sum(a[k]["tokens_policy"] for k in keys) / n, 1),
        "tokens_policy_b": round(sum(b[k]["tokens_policy"] for k in keys) / n, 1),
    }


def _items(path: Path) -> dict[str, dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    items: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items[str(row["id"])] = row
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a trade-off item ({exc})") from exc
    return items
