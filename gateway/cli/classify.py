"""``stopgate classify TEXT``: print the domain classification of a text as one JSON object.

Uses the domain files of ``STOPGATE_DOMAINS_DIR`` (``--domains-dir``) and caches example embeddings
under ``STOPGATE_DATA_DIR`` (``--data-dir``), exactly as the server does. ``-`` reads stdin.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.errors import RequestError

_FLAGS = ("domains_dir", "data_dir")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("classify", help="print the domain of a text as JSON")
    parser.add_argument("text", help="the text to classify ('-' reads it from stdin)")
    add_settings_flags(parser, only=_FLAGS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gateway.classify import Classifier

    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise RequestError("the text to classify is empty", param="text")
    classifier = Classifier.from_settings(settings_from_args(args))
    try:
        result = classifier.classify(text)
    finally:
        classifier.close()
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0
