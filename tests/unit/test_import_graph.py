"""The import graph of ``gateway``: no circle between modules, no arrow from a lower layer up.

Every ``import``/``from ... import`` of a gateway module counts, wherever it is written (module
level, inside a function, under ``TYPE_CHECKING``): a lazy or type-only import is still a
dependency, and a circle of them is still two modules that cannot be understood one at a time.
``from gateway.x import y`` is an arrow to ``gateway.x.y`` when that is a module, else to ``gateway.x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("gateway", "errors", "domains"),  # names and the error tree: import nothing of ours
    ("settings",),
    ("redis", "redis_server", "logs"),  # infrastructure
    ("worker",),  # the model: knows no policy, no serving, no HTTP
    ("policy", "classify", "audit", "ratelimit", "autopilot.samples"),  # engine, stores, sinks: no serving, no HTTP
    ("offline",),  # replay, generations, grading, calibration: library code over policy and worker
    ("serving",),  # one request's pipeline
    ("autopilot", "metrics", "services", "drain"),  # what the app holds around the pipeline
    ("http",),  # the HTTP edge
    ("app",),  # wiring
    ("bench",),  # benchmarks: may drive anything but the CLI
    ("cli",),  # argparse: imports everything, nothing imports it
)
"""Bottom to top: a module may import its own layer and those below, never one above. An entry is a
package or module under ``gateway`` (a dotted entry overrides its package's layer)."""

KNOWN_PENDING: dict[tuple[str, str], str] = {
    # (importer, imported): why it is still here and whose change removes it
}
"""Arrows that break the rules today, each owned by a change in progress; remove an entry with it."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def graph() -> dict[str, frozenset[str]]:
    """Each gateway module -> the gateway modules it imports."""
    known = modules()
    out: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "gateway"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] != "gateway":
                    continue
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in known else node.module)
        out[name] = frozenset(t for t in targets if t in known and t != name)
    return out


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS entry that names the module or a package above it."""
    parts = module.split(".")[1:] or ["gateway"]
    for depth in range(len(parts), 0, -1):
        name = ".".join(parts[:depth])
        for rank, names in enumerate(LAYERS):
            if name in names:
                return rank
    raise LookupError(f"{module} is in no layer: add {parts[0]!r} to LAYERS")


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def without_pending(edges: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    return {m: frozenset(t for t in ts if (m, t) not in KNOWN_PENDING) for m, ts in edges.items()}


def test_the_graph_is_read() -> None:
    """The scan finds the package's modules and their imports (a guard against a silent empty graph)."""
    edges = graph()
    assert "gateway.cli" in edges and "gateway.offline.calibrate" in edges
    assert "gateway.offline.replay" in edges["gateway.offline.calibrate"]


def test_cycles_finds_a_circle() -> None:
    """The cycle finder reports a three-module circle and nothing for a chain."""
    circle = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(circle) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_import_circle() -> None:
    """No two gateway modules import each other, directly or round a longer circle."""
    assert cycles(without_pending(graph())) == []


def test_every_module_has_a_layer() -> None:
    """A new package or top-level module is placed in LAYERS before it is imported from anywhere."""
    for module in graph():
        layer_of(module)


def test_no_arrow_from_a_lower_layer_up() -> None:
    """bench/offline never import the CLI, policy never serving or HTTP, worker never policy, and so on."""
    upward = [
        f"{module} -> {target}"
        for module, targets in without_pending(graph()).items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_known_pending_arrows_still_exist() -> None:
    """An entry of KNOWN_PENDING whose arrow is gone is removed from the list (it cannot come back silently)."""
    edges = graph()
    stale = [f"{a} -> {b}" for a, b in KNOWN_PENDING if a in edges and b not in edges[a]]
    assert stale == []
