"""Tiny domain sets written as real YAML files for the classifier tests."""

from __future__ import annotations

from pathlib import Path

TINY_DOMAINS = {
    "math": [
        "what is 12 times 7",
        "solve 3x + 4 = 19",
        "A shop sells pens at $2 each. How much do 9 pens cost?",
        "calculate 15 percent of 300",
        "Sam has 14 apples and gives away 5. How many are left?",
        "what's the square root of 81",
    ],
    "support": [
        "what is my checking account balance",
        "my credit card was stolen",
        "transfer $50 to my savings account",
        "why was my card declined",
        "what's the routing number for my bank",
        "how many reward points are on my card",
    ],
    "general": [
        "book a table for two tonight",
        "what's the weather tomorrow",
        "play some jazz music",
        "how long do i boil pasta",
        "remind me to call mom at 6",
        "find me a hotel in paris",
    ],
}


def write_domains(directory: Path, domains: dict[str, list[str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, examples in domains.items():
        lines = [f"name: {name}", f"description: the {name} domain", "examples:"]
        lines += [f'  - "{e}"' for e in examples]
        (directory / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory
