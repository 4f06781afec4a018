"""Who may import whom (STYLE.md, "Layering"), checked by parsing every module's imports.

    engine                      standard library only; knows no numpy and no op
    array                       the only package that imports engine
    activation cost initializer the public Array API (corgi, corgi.array, corgi.numbers)
    layer optimizer             on top of those
    model gradcheck             above them
    datasets train distributed  at the top (train may import corgi.engine, for --workers;
                                distributed never does, and nothing below imports it)

A module may import its own layer and the layers below, never one above.
Modules that do not exist yet are simply not checked; once they exist they
must obey, and a new module must be given a layer here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "corgi"

# module (or package) -> layer; the longest matching prefix wins.
LAYERS = {
    "corgi.numbers": 0,
    "corgi.checks": 0,
    "corgi.engine": 0,
    "corgi.array": 1,
    "corgi.activation": 2,
    "corgi.cost": 2,
    "corgi.initializer": 2,
    "corgi.layer": 3,
    "corgi.optimizer": 3,
    "corgi.schedule": 3,
    "corgi.model": 4,
    "corgi.checkpoint": 4,
    "corgi.gradcheck": 4,
    "corgi.datasets": 5,
    "corgi.train": 5,
    "corgi.distributed": 5,  # beside train; loads mpi4py itself, lazily
    "corgi.__main__": 5,
    "corgi": 6,  # corgi/__init__.py: the public surface gathers everything
}
PUBLIC_ARRAY_API = {"corgi", "corgi.array", "corgi.numbers"}
MAY_IMPORT_ENGINE = {"corgi.array", "corgi.train"}
THIRD_PARTY_ANYWHERE = {"numpy"}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def owner(name: str) -> str:
    """The LAYERS key that governs module ``name`` (longest prefix)."""
    best = ""
    for key in LAYERS:
        # "corgi" itself is corgi/__init__.py only, not a catch-all for new modules.
        if (name == key or (key != "corgi" and name.startswith(key + "."))) and len(key) > len(best):
            best = key
    return best


def imports(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    name = module_name(path, package)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                # ``from corgi import engine`` imports the submodule corgi.engine.
                candidate = f"{module}.{alias.name}"
                is_module = (package.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    package.parent / Path(*candidate.split("."))
                ).is_dir()
                found.append((node.lineno, candidate if module.startswith("corgi") and is_module else module))
    return found


def violations(package: Path) -> list[str]:
    """Every import in ``package`` that breaks the layering rules."""
    problems = []
    stdlib = sys.stdlib_module_names
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        key = owner(name)
        if not key:
            problems.append(f"{name}: has no layer; add it to LAYERS in tests/test_layering.py")
            continue
        layer = LAYERS[key]
        for line, target in imports(path, package):
            where = f"{path.relative_to(package.parent)}:{line} imports {target}"
            top = target.split(".")[0]
            if key == "corgi.engine":
                if top != "__future__" and top not in stdlib and not (target == "corgi.engine" or target.startswith("corgi.engine.")):
                    problems.append(f"{where}: the engine imports only the standard library and itself")
                continue
            if top == "corgi":
                target_key = owner(target)
                if target_key == "corgi.engine" and key not in MAY_IMPORT_ENGINE:
                    problems.append(f"{where}: only corgi.array (and corgi.train) may import the engine")
                elif target_key == key:
                    continue  # within one module or package
                elif key in ("corgi.activation", "corgi.cost", "corgi.initializer") and target not in PUBLIC_ARRAY_API and target_key == "corgi.array":
                    problems.append(f"{where}: {key} uses the public Array API (corgi, corgi.array), not array internals")
                elif target_key == "corgi" and layer < 2:
                    problems.append(f"{where}: {key} sits below the public surface and must not import it")
                elif target_key != "corgi" and LAYERS.get(target_key, 99) > layer:
                    problems.append(f"{where}: {key} (layer {layer}) imports {target_key} (layer {LAYERS.get(target_key)}), a layer above")
            elif top not in stdlib and top != "__future__" and top not in THIRD_PARTY_ANYWHERE and layer < 5:
                problems.append(f"{where}: below datasets/train only numpy is a runtime dependency")
    return problems


def test_corgi_obeys_the_layering():
    assert PACKAGE.is_dir()
    assert violations(PACKAGE) == []


def test_only_distributed_imports_mpi4py_and_only_train_imports_distributed():
    # ``import corgi`` must never need MPI: no other module may import mpi4py, and none but
    # corgi.train (which trains data-parallel when an MPI launcher started it) corgi.distributed.
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path, PACKAGE)
        if owner(name) == "corgi.distributed":
            continue
        for line, target in imports(path, PACKAGE):
            assert target.split(".")[0] != "mpi4py", f"{name}:{line} imports {target}"
            if owner(name) != "corgi.train":
                assert owner(target) != "corgi.distributed", f"{name}:{line} imports {target}"


def test_importing_corgi_or_running_corgi_train_alone_loads_neither_distributed_nor_mpi4py():
    # corgi.train imports corgi.distributed only inside main, and that imports mpi4py only under a launcher
    code = (
        "import sys, corgi, corgi.train\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(('corgi.distributed', 'mpi4py')))\n"
        "assert loaded == [], loaded\n"
        "corgi.train.main(['--dataset', 'digits', '--epochs', '1', '--max-steps', '1', '--workers', '0'])\n"
        "assert 'mpi4py' not in sys.modules\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PMI", "OMPI_", "MPI_"))}
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("held-out accuracy: 0.")


def test_the_rules_cover_the_modules_style_md_names():
    # The checks above are only as good as the map; the core is there now.
    for name in ("corgi.engine", "corgi.array", "corgi.gradcheck", "corgi.datasets", "corgi.numbers"):
        assert owner(name) == name


@pytest.fixture
def fake_corgi(tmp_path):
    """A small corgi tree with one legal and several illegal imports."""
    files = {
        "__init__.py": "from .array import Array\nfrom .model import Model\n",
        "numbers.py": "import numpy as np\n",
        "engine/__init__.py": "from .node import Node\n",
        "engine/node.py": "import threading\nimport numpy\n",
        "array/__init__.py": "from .core import Array\n",
        "array/core.py": "from .. import engine\nfrom ..numbers import default_float\nfrom ..layer import dense\n",
        "activation.py": "from corgi.array.core import Array\nfrom . import engine\n",
        "cost.py": "from . import Array\nfrom .array import Array\n",
        "layer/__init__.py": "",
        "layer/dense.py": "from ..activation import make_relu\nfrom ..model import Model\nfrom . import base\n",
        "layer/base.py": "import tqdm\n",
        "model.py": "from .layer import dense\nfrom .optimizer import sgd\n",
        "train.py": "import corgi.engine\nimport tqdm\n",
        "mystery.py": "",
    }
    for name, text in files.items():
        path = tmp_path / "corgi" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "corgi"


def test_the_checker_finds_each_kind_of_violation(fake_corgi):
    found = "\n".join(violations(fake_corgi))
    expected = [
        "engine/node.py:2 imports numpy: the engine imports only",
        "array/core.py:3 imports corgi.layer.dense: corgi.array (layer 1) imports corgi.layer (layer 3)",
        "activation.py:1 imports corgi.array.core: corgi.activation uses the public Array API",
        "activation.py:2 imports corgi.engine: only corgi.array",
        "layer/dense.py:2 imports corgi.model: corgi.layer (layer 3) imports corgi.model (layer 4)",
        "layer/base.py:1 imports tqdm: below datasets/train only numpy",
        "corgi.mystery: has no layer",
    ]
    for text in expected:
        assert text in found, f"missed: {text}\nfound:\n{found}"
    # and nothing else: the legal imports pass
    assert len(violations(fake_corgi)) == len(expected), found
