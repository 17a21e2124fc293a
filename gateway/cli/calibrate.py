"""``stopgate calibrate --domain D --data FILE``: tune a domain's policy on recorded generations.

Prints the figures before and after and the YAML diff; ``--write`` saves the tuned policy over
``<policies_dir>/<D>.yaml`` (version bumped). Full generations come from the same cache as
``stopgate bench tradeoff``. See ``gateway.offline.tuning`` for the search and
``gateway.offline.calibrate`` for the constraints.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.errors import RequestError

if TYPE_CHECKING:
    from gateway.offline.tuning import Score


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("calibrate", help="tune a domain's policy parameters on a data set")
    parser.add_argument("--domain", required=True, help="the domain whose policies/<domain>.yaml is tuned")
    parser.add_argument("--data", type=Path, required=True, help="JSON lines: id, domain, query, gold")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.95,
        help="least agreement with full inference (domains without gold: answers kept)",
    )
    parser.add_argument("--max-em-drop", type=float, default=0.01, help="largest EM drop allowed (fraction)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows of the domain")
    parser.add_argument("--rounds", type=int, default=4, help="coordinate-ascent rounds at most")
    parser.add_argument(
        "--min-gain",
        type=float,
        default=0.5,
        help="least extra saving (percentage points) a change must bring to be taken",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests decoded together (batch rows)")
    parser.add_argument("--write", action="store_true", help="write the tuned policy file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings_flags(parser, only=("model", "device", "domains_dir", "policies_dir", "data_dir"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gateway.cli.policies import known_domains
    from gateway.offline.calibrate import Bounds, CalibrateOptions, calibrate_domain
    from gateway.offline.policy_file import diff
    from gateway.offline.tuning import SearchOptions

    if not 0.0 <= args.min_agreement <= 1.0:
        raise RequestError("--min-agreement must be within 0..1", param="min-agreement")
    if not 0.0 <= args.max_em_drop <= 1.0:
        raise RequestError("--max-em-drop must be within 0..1", param="max-em-drop")
    settings = settings_from_args(args)
    bounds = Bounds(args.min_agreement, args.max_em_drop)
    options = CalibrateOptions(
        domain=args.domain,
        data=args.data,
        names=known_domains(settings.domains_dir),
        bounds=bounds,
        search=SearchOptions(rounds=args.rounds, min_gain=args.min_gain),
        limit=args.limit,
        concurrency=args.concurrency,
        show_progress=not args.quiet,
    )
    result = asyncio.run(calibrate_domain(settings, options))
    tuned = result.tuned
    out = sys.stdout
    out.write(
        f"{result.domain}: {result.rows} rows, bound agreement >= {bounds.min_agreement}, "
        f"EM drop <= {bounds.max_em_drop}\n"
    )
    out.write(f"  current  {_figures(tuned.start_score)}\n")
    for label, s in tuned.steps:
        out.write(f"  step     {label}: {_figures(s)}\n")
    out.write(f"  proposed {_figures(tuned.best_score)}\n")
    if not tuned.best_score.feasible:
        out.write("  no policy around the current one meets the bounds; nothing written\n")
        return 1
    if not tuned.changed:
        out.write("  the current policy is already the best found\n")
        return 0
    out.write(diff(result.original, result.proposed, str(result.path)))
    if args.write:
        result.path.write_text(result.proposed, encoding="utf-8")
        out.write(f"wrote {result.path} (version {tuned.best.version})\n")
    else:
        out.write("(dry run: --write saves it)\n")
    return 0


def _figures(s: Score) -> str:
    f = s.figures
    parts = [f"saved {f['saved_pct']:.1f}%"]
    if f["em_full"] is not None:
        parts.append(f"EM {f['em_full']:.3f}->{f['em_policy']:.3f} agreement {f['agreement']:.3f}")
    parts.append(f"answers kept {f['answer_kept']:.3f}")
    if f["code_fence_intact"] is not None:
        parts.append(f"fences intact {f['code_fence_intact']:.3f}")
    parts.append("ok" if s.feasible else "OUT OF BOUNDS")
    return ", ".join(parts)
