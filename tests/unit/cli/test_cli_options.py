"""Typed options as flags: a benchmark's ``Options`` dataclass becomes its command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.bench import tradeoff
from gateway.cli import build_parser
from gateway.cli.common import add_option_flags, options_from_args


@dataclass(frozen=True)
class Example:
    data: Path = field(metadata={"help": "rows"})
    limit: int | None = field(default=None, metadata={"help": "at most N"})
    rate: float = 0.5
    name: str = "x"
    quiet: bool = False


def parse(*argv: str) -> Example:
    parser = argparse.ArgumentParser()
    add_option_flags(parser, Example)
    return options_from_args(Example, parser.parse_args(list(argv)))


def test_fields_become_kebab_case_flags_with_their_types() -> None:
    """Each field is a --kebab-case flag converted to the field's type; unset flags keep the defaults."""
    assert parse("--data", "d.jsonl") == Example(Path("d.jsonl"))
    got = parse("--data", "d", "--limit", "3", "--rate", "2", "--name", "y", "--quiet")
    assert got == Example(Path("d"), 3, 2.0, "y", True) and isinstance(got.rate, float)


def test_a_field_without_default_is_a_required_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Leaving out a field that has no default is a usage error naming the flag."""
    with pytest.raises(SystemExit):
        parse("--limit", "3")
    assert "--data" in capsys.readouterr().err


def test_an_unsupported_field_type_is_refused() -> None:
    """A field type argparse cannot convert is a programming error, found when the parser is built."""

    @dataclass(frozen=True)
    class Bad:
        names: list[str] = field(default_factory=list)

    with pytest.raises(TypeError, match="names"):
        add_option_flags(argparse.ArgumentParser(), Bad)


def test_bench_commands_hand_typed_options_to_the_benchmark() -> None:
    """`stopgate bench tradeoff ...` parses into the module's own Options and its settings flags."""
    args = build_parser().parse_args(
        ["bench", "tradeoff", "--data", "d", "--json", "r.json", "--items-out", "i", "--limit-per-domain", "4"]
    )
    options = options_from_args(tradeoff.Options, args)
    assert options == tradeoff.Options(Path("d"), Path("r.json"), Path("i"), limit_per_domain=4)
    assert args.setting_policies_dir is None and callable(args.handler)
