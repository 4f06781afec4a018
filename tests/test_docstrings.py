"""Every public name shows a runnable example (STYLE.md, "Docs and tests").

pytest runs ``--doctest-modules`` over corgi/, so an example in a docstring
is a test; this file checks that every public name has one. The public API:

- the names in ``__all__`` of the packages that declare their surface
  (``PACKAGES``);
- the public module-level functions and classes *defined* in the other
  public modules (``MODULES``): a name a module merely imports (``Path``
  in corgi.train.cli) belongs to somebody else;
- the public methods, static and class methods, and properties (their
  getter's docstring) that each of those classes defines itself, leaving out
  the fields a NamedTuple or dataclass generates.

A docstring counts when doctest's own parser finds an example in it (a bare
``>>>`` in prose does not), and the object's own docstring is read, never
one ``inspect.getdoc`` inherits from a base class.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import types
from collections.abc import Iterator

import pytest

PACKAGES = ("corgi", "corgi.engine", "corgi.array", "corgi.layer", "corgi.optimizer", "corgi.train", "corgi.distributed")
MODULES = (
    "corgi.activation",
    "corgi.cost",
    "corgi.initializer",
    "corgi.schedule",
    "corgi.model",
    "corgi.checkpoint",
    "corgi.gradcheck",
    "corgi.datasets",
    "corgi.train.blas",
    "corgi.train.cli",
    "corgi.train.loop",
    "corgi.train.networks",
    "corgi.train.progress",
    "corgi.numbers",
)

_PARSER = doctest.DocTestParser()


def public_names(module: types.ModuleType, use_all: bool) -> Iterator[tuple[str, object]]:
    """(dotted public name, object) for every public function and class of ``module``."""
    if use_all:
        names = list(module.__all__)
    else:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__
        ]
    for name in names:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isroutine(value):
            yield f"{module.__name__}.{name}", value


def generated_fields(cls: type) -> set[str]:
    """The fields a NamedTuple or a dataclass makes into class members."""
    fields = set(getattr(cls, "_fields", ())) if issubclass(cls, tuple) else set()
    if dataclasses.is_dataclass(cls):
        fields.update(field.name for field in dataclasses.fields(cls))
    return fields


def public_members(cls: type) -> Iterator[tuple[str, object]]:
    """(name, function) for every public method and property ``cls`` defines itself, or takes
    from a mixin defined in corgi that is not public itself (corgi.Array's operation families)."""
    generated = generated_fields(cls)
    namespace: dict[str, object] = {}
    for base in reversed(cls.__mro__):
        if base is cls or (base.__module__.startswith("corgi") and base.__name__.endswith("Methods")):
            namespace.update(vars(base))
    for name, value in namespace.items():
        if name.startswith("_") or name in generated:
            continue
        if isinstance(value, property):
            if value.fget is not None:
                yield name, value.fget
        elif isinstance(value, (staticmethod, classmethod)):
            yield name, value.__func__
        elif inspect.isfunction(value):
            yield name, value


def own_docstring(obj: object) -> str:
    """The object's own docstring (a class's from its own namespace, never a base's)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) else ""


def has_example(obj: object) -> bool:
    return bool(_PARSER.get_examples(own_docstring(obj)))


def missing_examples(packages=PACKAGES, modules=MODULES) -> tuple[list[str], int]:
    """The public names without a doctest example, and how many names were checked.

    Each object counts once, under the first public name that reaches it.
    An example in an object defined outside corgi would never run, so it is
    reported too.
    """
    seen: set[int] = set()
    missing: list[str] = []
    checked = 0

    def check(name: str, obj: object, home: str) -> None:
        nonlocal checked
        if id(obj) in seen:
            return
        seen.add(id(obj))
        checked += 1
        if not str(home).startswith("corgi"):
            missing.append(f"{name} (defined in {home}, outside corgi: --doctest-modules never runs it)")
        elif not has_example(obj):
            missing.append(f"{name} (in {home})")

    for module_name, use_all in [(p, True) for p in packages] + [(m, False) for m in modules]:
        module = importlib.import_module(module_name)
        for name, obj in public_names(module, use_all):
            home = getattr(obj, "__module__", None)
            check(name, obj, home)
            if inspect.isclass(obj):
                for member, function in public_members(obj):
                    check(f"{name}.{member}", function, getattr(function, "__module__", home))
    return missing, checked


def test_every_public_name_has_a_runnable_example():
    missing, checked = missing_examples()
    assert checked > 100, f"only {checked} public names found: the walk is broken"
    assert not missing, (
        f"{len(missing)} of {checked} public names have no doctest example in their docstring:\n  "
        + "\n  ".join(missing)
    )


# -- the checker checks what it says -------------------------------------------


def _fake_module() -> types.ModuleType:
    source = '''
from typing import NamedTuple, TextIO
from dataclasses import dataclass

def shown():
    """Shown.

    >>> shown()
    """

def bare():
    """No example; a >>> in prose is no example either."""

class Point(NamedTuple):
    """A point.

    >>> Point(1, 2).x
    1
    """
    x: int
    y: int

    def norm(self):
        """Its length."""

@dataclass
class Box:
    """A box.

    >>> Box(1).size
    1
    """
    size: int

    @property
    def area(self):
        """Its area."""

    @staticmethod
    def unit():
        """The unit box.

        >>> Box.unit()
        """

class Child(Box):
    def helper(self):
        """A helper.

        >>> 1
        1
        """

    def inherit(self):
        pass

def _private():
    pass
'''
    module = types.ModuleType("corgi._fake_doc_module")
    exec(compile(source, "<fake>", "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - a fixed test module
    return module


def test_checker_reports_exactly_the_names_without_examples(monkeypatch):
    import sys

    module = _fake_module()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    missing, checked = missing_examples(packages=(), modules=(module.__name__,))
    # TextIO, NamedTuple and dataclass are imported, so not checked; x, y and size are generated fields.
    assert [name.split(" ")[0] for name in missing] == [
        "corgi._fake_doc_module.bare",
        "corgi._fake_doc_module.Point.norm",
        "corgi._fake_doc_module.Box.area",
        "corgi._fake_doc_module.Child",
        "corgi._fake_doc_module.Child.inherit",
    ]
    assert checked == 10


@pytest.mark.parametrize("name", ["corgi.train.cli.Path", "corgi.gradcheck.Any", "corgi.initializer.default_float"])
def test_imported_names_are_not_checked_where_they_are_imported(name):
    module_name, _, attribute = name.rpartition(".")
    module = importlib.import_module(module_name)
    assert hasattr(module, attribute)
    assert attribute not in dict(public_names(module, use_all=False))


def test_the_walk_reaches_the_methods_arrays_take_from_their_operation_families():
    from corgi import Array

    members = dict(public_members(Array))
    for name in ("backward", "transpose", "T", "mean", "sum", "clip", "powf", "softmax", "matmul", "conv", "astype"):
        assert name in members, name
    assert not has_example(type("Bare", (), {"__doc__": "no example"}))
