"""Regenerate the sequence diagrams in docs/ from real backward passes.

Every diagram in docs/engine.md is recorded by ``corgi.engine.trace()`` while
a real pass runs over real Arrays; nothing is drawn by hand.

    python docs/make_diagrams.py           # refresh what changed, embed, render
    python docs/make_diagrams.py --force   # re-record every diagram from a new run
    python docs/make_diagrams.py --check   # exit 1 if a committed diagram is stale

For each scenario it writes ``docs/diagrams/<name>.mmd``, copies it into
docs/engine.md between ``<!-- diagram:<name> -->`` and ``<!-- /diagram -->``,
and, when the Mermaid CLI (``mmdc``) and a browser are installed, renders
``docs/diagrams/<name>.svg``. Passes on worker threads and concurrent passes
interleave differently on every run, so a committed diagram is kept as long
as its *structure* (``structure()``: who sent a delta to whom, what each
node counted, what fired how often, in which order where the order is fixed)
still matches a fresh run; ``--force`` re-records it anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np

from corgi import (
    Array,
    allclose,
    arr,
    engine,
)

DIAGRAMS = ROOT / "docs" / "diagrams"
ENGINE_DOC = ROOT / "docs" / "engine.md"
STAMP = "<!-- corgi diagram source sha256: {} -->"


# -- the scenarios ----------------------------------------------------------


@contextlib.contextmanager
def engine_settings(workers: int, handoff_cost: int | None = None) -> Iterator[None]:
    """Run the block with these engine settings and restore the old ones after."""
    before = engine.settings()
    engine.configure(workers=workers, handoff_cost=before.handoff_cost if handoff_cost is None else handoff_cost)
    try:
        yield
    finally:
        engine.configure(workers=before.workers, handoff_cost=before.handoff_cost)


def product() -> engine.Trace:
    """The seed's dynamic-graph example, its first two trips round the loop."""
    a = arr(5.0).tracked("a")
    b = arr(2.0).tracked("b")
    c = arr(0.0).tracked("c")
    for _ in range(2):
        c = c + a * b
        if c[0] > 50.0:
            c = c * a
    with engine_settings(workers=2), engine.trace() as t:
        c.backward()
    assert c == arr(20.0) and a.gradient() == arr(4.0) and b.gradient() == arr(10.0)
    return t


def diamond() -> engine.Trace:
    """``h = tanh(x)`` has two consumers; it fires only after both reported."""
    x = arr(0.5).tracked("x")
    h = x.tanh()
    y = h.exp() * h.sigmoid()
    with engine_settings(workers=2), engine.trace() as t:
        y.backward()
    hv = np.tanh(0.5)
    s = 1.0 / (1.0 + np.exp(-hv))
    expected = (np.exp(hv) * s + np.exp(hv) * s * (1.0 - s)) * (1.0 - hv * hv)
    assert allclose(x.gradient(), arr(expected), rtol=1e-12)
    return t


def workers() -> engine.Trace:
    """Four heavy branches, two worker threads, every ready node handed off."""
    values = np.linspace(0.1, 1.0, 50_000)  # away from relu's kink at 0
    x = Array(values).tracked("x")
    y = (x.exp() + x.tanh()) * (x.sigmoid() - x.relu())
    with engine_settings(workers=2, handoff_cost=0), engine.trace() as t:
        y.backward()
    s = 1.0 / (1.0 + np.exp(-values))
    left, right = np.exp(values) + np.tanh(values), s - values
    expected = (np.exp(values) + 1.0 - np.tanh(values) ** 2) * right + left * (s * (1.0 - s) - 1.0)
    assert allclose(x.gradient(), Array(expected), rtol=1e-12)
    return t


def error() -> engine.Trace:
    """A backward function raises: the pass is cancelled and commits nothing."""
    x = arr(2.0).tracked("x")
    y = x * 3.0

    def refuse(inputs, is_tracked, delta):
        raise FloatingPointError("explode: this backward always fails")

    z = Array.op([y], lambda v: v[0] * 1.0, refuse, name="explode") + y.exp()
    with engine_settings(workers=2), engine.trace() as t:
        try:
            z.backward()
        except FloatingPointError:
            pass
        else:
            raise AssertionError("the pass should have raised")
    assert x.gradient() is None and z.gradient() is None
    return t


def rendezvous(x: Array, barrier: threading.Barrier, name: str) -> Array:
    """The identity, whose backward waits at ``barrier``: both passes are in the graph at once."""

    def backward_op(inputs, is_tracked, delta):
        barrier.wait()
        return [delta]

    return Array.op([x], lambda v: v[0], backward_op, name=name)


def concurrent() -> engine.Trace:
    """Two threads call backward() at once on graphs that share ``mul``."""
    a = arr(2.0).tracked("a")
    b = arr(0.5).tracked("b")
    shared = a * b
    barrier = threading.Barrier(2, timeout=30)
    roots = [rendezvous(shared.exp(), barrier, "meet_1"), rendezvous(shared.ln(), barrier, "meet_2")]
    failures: list[BaseException] = []

    def run(root: Array) -> None:
        try:
            root.backward()
        except BaseException as failure:  # noqa: BLE001 - reported below
            failures.append(failure)

    with engine_settings(workers=2), engine.trace() as t:
        threads = [threading.Thread(target=run, args=(root,)) for root in roots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    if failures:
        raise failures[0]
    assert not any(thread.is_alive() for thread in threads), "a concurrent pass did not finish"
    # d/da [exp(ab) + ln(ab)] = b exp(ab) + 1/a; the two passes add into a's gradient
    assert allclose(a.gradient(), arr(0.5 * np.exp(1.0) + 0.5), rtol=1e-12)
    return t


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[], engine.Trace]
    ordered: bool  # one thread runs every step, so the order of events is fixed
    illustrative: Callable[[engine.Trace], bool] = lambda trace: True


def _fired_on_workers(trace: engine.Trace) -> int:
    callers = {event.thread for event in trace.events if event.kind == "start"}
    return len({event.thread for event in trace.events if event.kind == "fire"} - callers)


def _overlapping(trace: engine.Trace) -> bool:
    kinds = [event.kind for event in trace.events]
    return kinds.index("end") > max(i for i, kind in enumerate(kinds) if kind == "start")


SCENARIOS = (
    Scenario("product", product, ordered=True),
    Scenario("diamond", diamond, ordered=True),
    Scenario("workers", workers, ordered=False, illustrative=lambda t: _fired_on_workers(t) >= 2),
    Scenario("error", error, ordered=True),
    Scenario("concurrent", concurrent, ordered=False, illustrative=_overlapping),
)


# -- structure: what must stay true from run to run -------------------------

_PARTICIPANT = re.compile(r"participant (\w+) as (.+)")
_ID = re.compile(r"\b([PN]\d+)\b")
_COUNTED = re.compile(r"(.+) (\d+) waits for (\d+)")


def structure(text: str, ordered: bool) -> object:
    """What a diagram says about the engine, minus what varies between runs.

    Thread notes are dropped (which worker ran a step is up to the pool).
    Node ids become their labels, and a pass becomes the node it started
    from. If every node has its own name the numbers are dropped too, since
    concurrent passes number nodes in arrival order. An ``ordered`` diagram
    keeps its exact sequence; otherwise the result is the multiset of its
    lines plus, for a single pass, any step that broke causality (a node
    firing before every delta reached it, or sending before it fired).
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != "sequenceDiagram":
        raise ValueError("structure: not a Mermaid sequenceDiagram")
    labels: dict[str, str] = {}
    body: list[str] = []
    for line in lines[1:]:
        match = _PARTICIPANT.fullmatch(line)
        if match:
            labels[match.group(1)] = match.group(2)
        elif not (line.startswith("Note right of") and ": fired on " in line):
            body.append(line)
    nodes = {key: label for key, label in labels.items() if key.startswith("N")}
    names = [label.rsplit(" ", 1)[0] for label in nodes.values()]
    passes = [key for key in labels if key.startswith("P")]
    unique = len(set(names)) == len(names)
    if not unique and len(passes) > 1:
        raise ValueError(f"structure: concurrent passes need unique node names, got {sorted(names)}")

    def node_label(label: str) -> str:
        return label.rsplit(" ", 1)[0] if unique else label

    roots = {}
    for line in body:
        match = re.match(r"(P\d+)->>(N\d+):", line)
        if match:
            roots[match.group(1)] = f"pass from {node_label(nodes[match.group(2)])}"

    def rename(match: re.Match) -> str:
        key = match.group(1)
        if key in nodes:
            return f"[{node_label(nodes[key])}]"
        return f"[{roots.get(key, key)}]"

    def counted(match: re.Match) -> str:
        parts = [part.strip() for part in re.split(r";|<br/>", match.group(1))]
        entries = [_COUNTED.fullmatch(part) for part in parts if part]
        if not all(entries):
            raise ValueError(f"structure: can't read the counts in {match.group(0)!r}")
        entries = [entry.groups() for entry in entries]
        names_ = [f"{name if unique else name + ' ' + number} waits for {count}" for name, number, count in entries]
        return "(counted: " + "; ".join(sorted(names_)) + ")"

    canonical = []
    for line in body:
        line = re.sub(r"\(counted:(.*)\)", counted, line)
        canonical.append(_ID.sub(rename, line))
    if ordered:
        return canonical
    return Counter(canonical), _causality(canonical) if len(passes) == 1 else []


def _causality(lines: list[str]) -> list[str]:
    """Steps of one pass that happen out of causal order."""
    problems = []
    arrow = re.compile(r"(\[[^\]]+\])-[-]?>>(\[[^\]]+\]): (delta|no delta)")
    fired: set[str] = set()
    expected: Counter = Counter()
    for line in lines:
        match = arrow.match(line)
        if match:
            expected[match.group(2)] += 1
    received: Counter = Counter()
    for line in lines:
        match = arrow.match(line)
        if match:
            sender, target = match.group(1), match.group(2)
            if sender not in fired and not sender.startswith("[pass from "):
                problems.append(f"{sender} sent before it fired")
            if target in fired:
                problems.append(f"{target} received a delta after it fired")
            received[target] += 1
        elif line.startswith("activate "):
            node = line[len("activate "):]
            if node in fired:
                problems.append(f"{node} fired twice")
            if received[node] != expected[node]:
                problems.append(f"{node} fired after {received[node]} of {expected[node]} deltas")
            fired.add(node)
    return problems


def record(scenario: Scenario, attempts: int = 1) -> str:
    """Run ``scenario`` and return its diagram; up to ``attempts`` tries for an illustrative run."""
    for _ in range(attempts):
        trace = scenario.run()
        if scenario.illustrative(trace):
            break
    return trace.mermaid()


def same_structure(old: str, new: str, ordered: bool) -> bool:
    try:
        return structure(old, ordered) == structure(new, ordered)
    except ValueError:
        return False


# -- embedding and rendering ------------------------------------------------


def embed(name: str, diagram: str, svg: bool) -> str:
    """The text that sits between the markers in docs/engine.md."""
    links = f"[{name}.mmd](diagrams/{name}.mmd)"
    if svg:
        links = f"[{name}.svg](diagrams/{name}.svg) · " + links
    return f"```mermaid\n{diagram}\n```\n\n<sub>Recorded from a real pass by `docs/make_diagrams.py`: {links}</sub>"


def embedded(document: str) -> dict[str, str]:
    """The blocks between diagram markers in ``document``, by name."""
    pattern = re.compile(r"<!-- diagram:(\w+) -->\n((?:(?!<!--).)*?)\n?<!-- /diagram -->", re.DOTALL)
    return {match.group(1): match.group(2) for match in pattern.finditer(document)}


def replace_embedded(document: str, name: str, block: str) -> str:
    pattern = re.compile(rf"(<!-- diagram:{name} -->\n)(?:(?!<!--).)*?\n?(<!-- /diagram -->)", re.DOTALL)
    if not pattern.search(document):
        raise ValueError(f"docs/engine.md has no <!-- diagram:{name} --> ... <!-- /diagram --> markers")
    return pattern.sub(lambda match: match.group(1) + block + "\n" + match.group(2), document)


def source_hash(diagram: str) -> str:
    return hashlib.sha256(diagram.encode()).hexdigest()


def svg_is_current(name: str) -> bool:
    """True if docs/diagrams/<name>.svg was rendered from the committed .mmd."""
    svg, mmd = DIAGRAMS / f"{name}.svg", DIAGRAMS / f"{name}.mmd"
    if not svg.exists() or not mmd.exists():
        return False
    return STAMP.format(source_hash(mmd.read_text())) in svg.read_text()


def find_renderer() -> list[str] | None:
    """The Mermaid CLI command, or None: ``$MMDC``, ``mmdc`` on PATH."""
    command = os.environ.get("MMDC") or shutil.which("mmdc")
    return [command] if command else None


def find_browser() -> str | None:
    """A Chromium for the Mermaid CLI: ``$PUPPETEER_EXECUTABLE_PATH`` or Debian's."""
    path = os.environ.get("PUPPETEER_EXECUTABLE_PATH")
    if path:
        return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def render(name: str, renderer: list[str], browser: str | None) -> None:
    """docs/diagrams/<name>.mmd -> <name>.svg, stamped with the source's hash."""
    mmd, svg = DIAGRAMS / f"{name}.mmd", DIAGRAMS / f"{name}.svg"
    with tempfile.TemporaryDirectory() as scratch:
        puppeteer = Path(scratch) / "puppeteer.json"
        settings = {"args": ["--no-sandbox", "--disable-gpu"]}
        if browser:
            settings["executablePath"] = browser
        puppeteer.write_text(json.dumps(settings))
        config = Path(scratch) / "mermaid.json"
        # The classic look with system fonts keeps each SVG ~25 kB instead of ~200 kB of embedded font.
        config.write_text('{"theme": "default", "look": "classic", "fontFamily": "Arial, Helvetica, sans-serif"}')
        subprocess.run(
            [*renderer, "--quiet", "-p", str(puppeteer), "-c", str(config), "-I", f"corgi-{name}",
             "-b", "white", "-i", str(mmd), "-o", str(svg)],
            check=True, timeout=120,
        )
    stamp = STAMP.format(source_hash(mmd.read_text()))
    svg.write_text(svg.read_text().rstrip() + "\n" + stamp + "\n")


# -- main -------------------------------------------------------------------


def stale() -> list[str]:
    """Names of scenarios whose committed diagram no longer matches a fresh run."""
    names = []
    document = ENGINE_DOC.read_text()
    blocks = embedded(document)
    for scenario in SCENARIOS:
        path = DIAGRAMS / f"{scenario.name}.mmd"
        if not path.exists():
            names.append(scenario.name)
            continue
        committed = path.read_text().strip()
        svg = (DIAGRAMS / f"{scenario.name}.svg").exists()
        if blocks.get(scenario.name) != embed(scenario.name, committed, svg) or not same_structure(committed, record(scenario), scenario.ordered):
            names.append(scenario.name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-record every diagram from a new run")
    parser.add_argument("--check", action="store_true", help="only report stale diagrams; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: docs/diagrams/{name}.mmd (run python docs/make_diagrams.py)")
        return 1 if names else 0

    DIAGRAMS.mkdir(exist_ok=True)
    renderer, browser = find_renderer(), find_browser()
    document = ENGINE_DOC.read_text()
    for scenario in SCENARIOS:
        path = DIAGRAMS / f"{scenario.name}.mmd"
        fresh = record(scenario, attempts=50)
        old = path.read_text().strip() if path.exists() else None
        if old is not None and not args.force and same_structure(old, fresh, scenario.ordered):
            diagram, status = old, "unchanged"
        else:
            diagram, status = fresh, "recorded"
            path.write_text(diagram + "\n")
        svg = DIAGRAMS / f"{scenario.name}.svg"
        if renderer and not svg_is_current(scenario.name):
            render(scenario.name, renderer, browser)
            status += ", rendered"
        elif not renderer and svg.exists() and not svg_is_current(scenario.name):
            svg.unlink()  # a picture of an older pass would contradict the text
            status += ", stale SVG removed"
        document = replace_embedded(document, scenario.name, embed(scenario.name, diagram, svg.exists()))
        print(f"{scenario.name}: {status}")
    ENGINE_DOC.write_text(document)
    if not renderer:
        print(
            "no Mermaid renderer found: SVGs not rendered. Install one with\n"
            "  PUPPETEER_SKIP_DOWNLOAD=1 npm install -g @mermaid-js/mermaid-cli && apt-get install chromium\n"
            "(or set MMDC to an mmdc binary), then run this script again."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
