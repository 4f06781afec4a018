"""docs/operations.md stays true to the code: the registry, the Array class, the numpy tables.

The reference's tables are parsed: every operation of ``corgi.array.PRIMITIVES`` and
``corgi.array.COMPOSED`` has a row whose registry column names it and whose kind column
says what the registry says (a primitive, or composed of exactly the operations recorded);
every registry name in the tables exists; every public member of ``Array`` and every
public function of ``corgi`` is mentioned; every numpy function the interop tables serve
is listed. Its Python examples run in ``tests/test_docs.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import corgi
from corgi import Array
from corgi.array import COMPOSED, PRIMITIVES
from corgi.array.interop import FUNCTIONS, UFUNCS, VALUES_ONLY

sys.path.insert(0, str(Path(__file__).parent))
from test_docstrings import public_members

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
TEXT = DOC.read_text()


def operation_rows(text: str = TEXT) -> list[dict[str, str]]:
    """The rows of every table with a ``registry`` column, as {column: cell}."""
    rows = []
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("- "):
            continue
        if "registry" in header:
            rows.append(dict(zip(header, cells)))
    return rows


def names_in(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_parser_reads_the_tables():
    rows = operation_rows()
    assert len(rows) > 50
    assert {"operation", "registry", "kind", "numpy", "PyTorch", "gradient"} <= set(rows[0])
    sample = "| op | registry | kind |\n| --- | --- | --- |\n| `x.a()` | `a` | primitive |\n\ntext\n| other | table |\n"
    assert operation_rows(sample) == [{"op": "`x.a()`", "registry": "`a`", "kind": "primitive"}]


def test_every_registered_operation_has_a_row_that_says_what_it_is():
    kinds: dict[str, set[str]] = {}
    for row in operation_rows():
        for name in names_in(row["registry"]):
            kinds.setdefault(name, set()).add(row["kind"])
    for name in PRIMITIVES:
        assert name in kinds, f"docs/operations.md has no row for the primitive {name!r}"
        assert all(kind.startswith("primitive") for kind in kinds[name]), f"{name}: {kinds[name]}"
    for name, parts in COMPOSED.items():
        assert name in kinds, f"docs/operations.md has no row for the composed operation {name!r}"
        for kind in kinds[name]:
            assert kind.startswith("composed:"), f"{name} is composed, the docs say {kind!r}"
            assert ", ".join(names_in(kind)) == parts, f"{name} is composed of {parts}, the docs say {kind!r}"


def test_every_registry_name_in_the_tables_exists():
    for row in operation_rows():
        for name in names_in(row["registry"]):
            assert name in PRIMITIVES or name in COMPOSED, f"docs/operations.md names {name!r}, which is not registered"
        if row["registry"] == "—":
            assert not row["kind"].startswith(("primitive", "composed")), row


def test_every_public_array_member_and_corgi_function_is_mentioned():
    for name in dict(public_members(Array)):
        assert re.search(rf"\.{name}\b", TEXT), f"docs/operations.md does not mention Array.{name}"
    for name in corgi.__all__:
        if callable(getattr(corgi, name)) and name not in ("Array", "GradcheckError", "gradcheck_model"):
            assert re.search(rf"`(corgi\.)?{name}\(", TEXT), f"docs/operations.md does not mention corgi.{name}"


def test_every_numpy_function_the_interop_serves_is_listed():
    for function in list(UFUNCS) + list(FUNCTIONS) + list(VALUES_ONLY):
        name = function.__name__
        aliases = {"true_divide": "divide", "absolute": "abs", "amax": "max", "amin": "min"}
        assert f"`np.{name}`" in TEXT or f"`np.{aliases.get(name, name)}`" in TEXT, f"np.{name} is not listed"


def test_the_meeting_points_are_one_numbered_section():
    section = TEXT.split("## Where corgi and numpy meet", 1)[1].split("\n## ", 1)[0]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", section, flags=re.MULTILINE)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 12
    for phrase in ("IndexError", "sum(k)", "axis", "(1,)", "assert_eq!", "mask", "TypeError", "np.asarray", "evenly"):
        assert phrase in section, phrase


@pytest.mark.parametrize("page", ["README.md", "tutorial.md", "porting.md", "architecture.md"])
def test_the_other_docs_link_the_reference(page):
    assert "operations.md" in (DOC.parent / page).read_text(), f"docs/{page} does not link operations.md"


def test_np_names_in_the_tables_are_numpy_functions():
    for name in set(re.findall(r"`np\.(\w+)", TEXT)):
        assert hasattr(np, name), f"docs/operations.md names np.{name}, which numpy does not have"
