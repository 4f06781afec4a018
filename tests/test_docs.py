"""The docs stay true: every Python block in them runs, and every diagram matches the engine.

Blocks in one file run in order in one namespace, like a reader typing them
into one session. A block is left out only by ``python no-run: <reason>`` in
its fence, or runs only once a module exists with ``python requires=<module>``
(skipped with that reason until then).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from corgi import engine

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = [
    "README.md", "docs/README.md", "docs/architecture.md", "docs/engine.md", "docs/tutorial.md", "docs/porting.md",
    "docs/operations.md", "docs/distributed.md",
]
FENCE = re.compile(r"^```(\S*)[ \t]*(.*?)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def _load_make_diagrams():
    spec = importlib.util.spec_from_file_location("make_diagrams", DOCS / "make_diagrams.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_diagrams", module)
    spec.loader.exec_module(module)
    return module


make_diagrams = _load_make_diagrams()


def python_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, fence options, code) of every ```python block."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        line = text.count("\n", 0, match.start()) + 2
        blocks.append((line, match.group(2).strip(), match.group(3)))
    return blocks


def test_python_blocks_are_found_with_their_options():
    text = "x\n```python\na = 1\n```\n\n```python no-run: needs MNIST files\nb\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(3, "", "a = 1\n"), (7, "no-run: needs MNIST files", "b\n")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", DOC_FILES)
def test_every_python_block_runs(name):
    path = ROOT / name
    assert path.exists(), f"{name} is missing"
    blocks = python_blocks(path.read_text())
    namespace = {"__name__": f"docs:{name}"}
    before = engine.settings()
    skipped = []
    try:
        for line, options, code in blocks:
            if options.startswith("no-run"):
                reason = options[len("no-run"):].lstrip(": ").strip()
                assert len(reason) >= 10, f"{name}:{line}: a no-run block must say why (```python no-run: <reason>)"
                continue
            if options.startswith("requires="):
                module = options[len("requires="):].split()[0]
                if importlib.util.find_spec(module) is None:
                    skipped.append(f"{name}:{line} needs {module}, which does not exist yet")
                    continue
            elif options:
                pytest.fail(f"{name}:{line}: unknown fence options {options!r} (use no-run: <reason> or requires=<module>)")
            exec(compile(code, f"{name}:{line}", "exec"), namespace)  # noqa: S102 - the docs' own examples
            assert engine.settings() == before, f"{name}:{line}: the block changed the engine settings and left them"
    finally:
        engine.configure(workers=before.workers, handoff_cost=before.handoff_cost)
    if skipped:
        pytest.skip("; ".join(skipped))


def test_docs_index_links_every_page_and_reliability():
    index = (DOCS / "README.md").read_text()
    for page in ("architecture.md", "engine.md", "tutorial.md", "porting.md", "reliability.md", "operations.md"):
        assert f"({page})" in index, f"docs/README.md does not link {page}"


# -- diagrams ---------------------------------------------------------------

SCENARIOS = {scenario.name: scenario for scenario in make_diagrams.SCENARIOS}


def test_every_issue_scenario_has_a_diagram():
    assert set(SCENARIOS) == {"product", "diamond", "workers", "error", "concurrent"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_engine_doc_embeds_the_committed_diagram(name):
    committed = (DOCS / "diagrams" / f"{name}.mmd").read_text().strip()
    svg = (DOCS / "diagrams" / f"{name}.svg").exists()
    blocks = make_diagrams.embedded((DOCS / "engine.md").read_text())
    assert blocks.get(name) == make_diagrams.embed(name, committed, svg), (
        f"docs/engine.md's {name} diagram differs from docs/diagrams/{name}.mmd: run python docs/make_diagrams.py"
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rendered_svg_comes_from_the_committed_diagram(name):
    if not (DOCS / "diagrams" / f"{name}.svg").exists():
        pytest.skip(f"no SVG of {name} committed (rendering needs mmdc and a browser)")
    assert make_diagrams.svg_is_current(name), f"docs/diagrams/{name}.svg is stale: run python docs/make_diagrams.py"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("run", range(3))
def test_committed_diagram_matches_what_the_engine_does(name, run):
    # Three fresh runs each: worker and concurrent passes interleave differently
    # every time, and the comparison must hold for every interleaving.
    scenario = SCENARIOS[name]
    committed = (DOCS / "diagrams" / f"{name}.mmd").read_text()
    fresh = make_diagrams.record(scenario)
    expected = make_diagrams.structure(committed, scenario.ordered)
    actual = make_diagrams.structure(fresh, scenario.ordered)
    assert actual == expected, f"docs/diagrams/{name}.mmd no longer matches the engine: run python docs/make_diagrams.py"
    if not scenario.ordered:
        assert actual[1] == [], f"{name}: steps out of causal order: {actual[1]}"


def _mutations(text: str) -> dict[str, str]:
    """Ways the engine could go wrong, applied to a diagram's text."""
    lines = text.splitlines()
    activate = next(i for i, line in enumerate(lines) if line.strip().startswith("activate N"))
    send = next(i for i, line in enumerate(lines) if re.match(r"\s*N\d+->>N\d+: delta$", line))
    fires_twice = lines[: activate + 1] + [lines[activate], lines[activate].replace("activate", "deactivate")] + lines[activate + 1:]
    wrong_target = list(lines)
    source, target = re.match(r"\s*(N\d+)->>(N\d+)", lines[send]).groups()
    wrong_target[send] = lines[send].replace(f"->>{target}", f"->>{source}")
    lost_delta = lines[:send] + lines[send + 1:]
    recounted = text.replace("waits for 1", "waits for 2", 1)
    return {
        "a node fires twice": "\n".join(fires_twice),
        "a delta goes to the wrong node": "\n".join(wrong_target),
        "a delta is lost": "\n".join(lost_delta),
        "a count changes": recounted,
    }


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_structure_comparison_catches_a_changed_engine(name):
    scenario = SCENARIOS[name]
    committed = (DOCS / "diagrams" / f"{name}.mmd").read_text()
    expected = make_diagrams.structure(committed, scenario.ordered)
    for what, changed in _mutations(committed).items():
        assert make_diagrams.structure(changed, scenario.ordered) != expected, f"{name}: missed '{what}'"


def test_structure_ignores_threads_and_node_numbering_of_concurrent_passes():
    committed = (DOCS / "diagrams" / "concurrent.mmd").read_text()
    other_threads = committed.replace("fired on caller 1", "fired on worker 7")
    # Swap the numbers of two nodes, as a different arrival order would.
    swapped = committed.replace("N1", "N_").replace("N6", "N1").replace("N_", "N6")
    # Renumber every label, in the participants and in the counts, as a
    # different arrival order of the two passes' counting would.
    renumbered = re.sub(r"(\w+) (\d+)(?= waits for|$)", lambda m: f"{m.group(1)} {int(m.group(2)) + 10}", committed, flags=re.MULTILINE)
    assert renumbered != committed
    expected = make_diagrams.structure(committed, ordered=False)
    assert make_diagrams.structure(other_threads, ordered=False) == expected
    assert make_diagrams.structure(swapped, ordered=False) == expected
    assert make_diagrams.structure(renumbered, ordered=False) == expected


def test_committed_diagrams_are_valid_mermaid_statements():
    # ';' ends a Mermaid statement, so one inside a message breaks the diagram on GitHub.
    for name in SCENARIOS:
        for line in (DOCS / "diagrams" / f"{name}.mmd").read_text().splitlines():
            assert ";" not in line, f"docs/diagrams/{name}.mmd: ';' splits a Mermaid statement: {line.strip()}"
