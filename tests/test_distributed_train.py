"""``corgi.train`` under ``mpiexec`` (issue 13): data-parallel, rank 0 alone prints and saves, resumable.

Every run is a real ``mpiexec -n 2`` or ``-n 3`` in a subprocess with a
timeout. Most run ``corgi.train``'s ``main`` through the ``cli`` scenario of
tests/mpi_scenarios.py, which captures each rank's output and hashes the
model it trained; two launch ``python -m mpi4py -m corgi.train`` and plain
``python -m corgi.train`` exactly as a user would. The single-process runs
they are compared with run in the pytest process.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_distributed import RUN_TIMEOUT, _environment, mpiexec_prefix, reports, run_ranks

from corgi.train import main

pytestmark = pytest.mark.usefixtures("engine_state")


@pytest.fixture(scope="module")
def mpiexec() -> list[str]:
    """The mpiexec command line prefix, or a skip saying what is missing."""
    return mpiexec_prefix()

# 1,438 training digits in global batches of 200: 7 whole batches and one of 38 per epoch
COMMON = ["--dataset", "digits", "--batch-size", "200", "--epochs", "2", "--lr", "0.2"]


def _single(argv: list[str]) -> str:
    """corgi.train in this process, quietly; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return out.getvalue()


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files if name != "corgi.json"}


def _cli(mpiexec: list[str], ranks: int, out: Path, argv: list[str], *options: str) -> list[dict]:
    return reports(mpiexec, ranks, "cli", out, "--argv=" + " ".join(argv), *options)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("ranks", "workers"), [(2, 0), (2, 2), (3, 1)])
def test_corgi_train_under_mpiexec_matches_one_process_and_only_rank_0_prints_and_saves(
    mpiexec, tmp_path, ranks, workers
):
    found = _cli(mpiexec, ranks, tmp_path / "runs", [*COMMON, "--workers", str(workers), "--save", str(tmp_path / "mpi")])
    # after 16 steps every rank's parameters, layer state and optimizer state are bitwise alike
    assert len({report["state"] for report in found}) == 1
    assert all(report["status"] == 0 and report["steps"] == 16 for report in found)
    printed = found[0]["stdout"].splitlines()
    assert [line.split()[:2] for line in printed[:2]] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert printed[2:] == [f"saved the model to {tmp_path / 'mpi.npz'}", printed[-1]]
    assert printed[-1].startswith("held-out accuracy: 0.")
    for report in found[1:]:
        assert report["stdout"] == "" and report["stderr"] == ""  # no line, no progress bar
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mpi.npz", "runs"]  # one file, no temporary left

    alone = _single([*COMMON, "--workers", "0", "--save", str(tmp_path / "one")]).splitlines()
    assert alone[-1] == printed[-1]  # the same held-out accuracy
    for line, same in zip(alone[:2], printed[:2]):  # the same losses, to the digits printed
        assert line.split()[:7] == same.split()[:7]
    ours, theirs = _arrays(tmp_path / "mpi.npz"), _arrays(tmp_path / "one.npz")
    assert sorted(ours) == sorted(theirs)
    for name, values in theirs.items():
        if values.dtype.kind == "f":  # the same global batches: equal up to the sums' rounding
            np.testing.assert_allclose(ours[name], values, rtol=0, atol=1e-12, err_msg=name)
        else:
            assert np.array_equal(ours[name], values), name


@pytest.mark.timeout(180)
@pytest.mark.parametrize("ranks", [2, 3])
def test_corgi_train_resumes_under_mpiexec_exactly_where_it_stopped(mpiexec, tmp_path, ranks):
    argv = [*COMMON, "--epochs", "3", "--optimizer", "adam", "--lr", "0.01", "--workers", "0"]
    straight = _cli(mpiexec, ranks, tmp_path / "straight", [*argv, "--save", str(tmp_path / "straight.npz")])
    stopped = _cli(mpiexec, ranks, tmp_path / "stopped", [*argv, "--stop-after", "1", "--save", str(tmp_path / "run.npz")])
    assert all(report["steps"] == 8 for report in stopped)
    resumed = _cli(mpiexec, ranks, tmp_path / "resumed", ["--resume", str(tmp_path / "run.npz"), "--workers", "0"])
    assert all(report["steps"] == 16 for report in resumed)
    # parameters, Adam's moments and steps, and the shuffling: bitwise as if never stopped, on every rank
    assert {report["state"] for report in resumed} == {straight[0]["state"]}
    assert resumed[0]["stdout"].splitlines()[-1] == straight[0]["stdout"].splitlines()[-1]
    assert [line.split()[:7] for line in resumed[0]["stdout"].splitlines()[:2]] == [
        line.split()[:7] for line in straight[0]["stdout"].splitlines()[1:3]
    ]
    ours, theirs = _arrays(tmp_path / "run.npz"), _arrays(tmp_path / "straight.npz")
    assert all(np.array_equal(ours[name], theirs[name]) for name in theirs)  # --resume saves where it read


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3])
def test_a_rank_that_raises_in_corgi_train_ends_every_rank_within_seconds(mpiexec, tmp_path, ranks):
    argv = [*COMMON, "--workers", "0", "--save", str(tmp_path / "run")]
    done, elapsed = run_ranks(mpiexec, ranks, "cli", tmp_path, "--argv=" + " ".join(argv), "--fail-step", "11")
    ended = time.time()
    assert done.returncode != 0
    assert "RuntimeError: corgi.train's step fails on purpose" in done.stderr
    assert not list(tmp_path.glob("rank-*.json"))  # no rank finished
    assert ended - float((tmp_path / "raised").read_text()) < 10.0
    assert elapsed < RUN_TIMEOUT
    # the first epoch's checkpoint (8 steps) is whole: a run can resume from it
    saved = _arrays(tmp_path / "run.npz")
    assert saved and not list(tmp_path.glob(".*.tmp"))


def _launch(mpiexec: list[str], ranks: int, runner: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [*mpiexec, "-n", str(ranks), sys.executable, *runner, "-m", "corgi.train", *argv]
    try:
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              env=_environment(), cwd=cwd)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{' '.join(command)} did not finish within {RUN_TIMEOUT} s (a hang):\n{expired.stderr}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("runner", [["-m", "mpi4py"], []], ids=["python-m-mpi4py", "plain-python"])
def test_the_documented_command_lines_train_data_parallel(mpiexec, tmp_path, runner):
    argv = [*COMMON, "--workers", "0", "--max-steps", "3"]
    done = _launch(mpiexec, 2, runner, argv, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # one rank printed: two epoch lines and the accuracy, once; no rank printed a progress bar twice
    assert [line.split()[:2] for line in lines[:2]] == [["epoch", "1/2"], ["epoch", "2/2"]] and len(lines) == 3
    assert lines[-1] == _single([*argv]).splitlines()[-1]
    assert done.stderr.count("epoch 1/2") <= 1
    # a bad option: every rank stops with status 2, and the message appears once
    bad = _launch(mpiexec, 2, runner, [*argv, "--epochs", "0"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.count("argument --epochs: expected a whole number >= 1, got '0'") == 1


# -- in this process: telling a launch from a single process -------------------------------------


def test_a_launch_of_several_ranks_without_mpi4py_refuses_to_train_alone(monkeypatch, capsys):
    from corgi.distributed import world

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    with pytest.raises(RuntimeError, match=r"world: this process was started by an MPI launcher \(2 ranks\) but "
                                           r"cannot use MPI: corgi.distributed needs mpi4py"):
        world()
    with pytest.raises(SystemExit) as stop:
        main([*COMMON, "--max-steps", "1"])
    assert stop.value.code == 2
    said = capsys.readouterr().err
    assert said.startswith("corgi-train: this process was started by an MPI launcher (2 ranks) but cannot use MPI")
    assert "[mpi]' (mpi4py and the mpich wheel)" in said  # the extra to install, under corgi's own name
    monkeypatch.setenv("PMI_SIZE", "1")  # a launch of one rank is a single process
    assert world() is None


def test_a_plain_process_is_a_single_process_and_mpi_is_not_started(monkeypatch):
    from corgi.distributed import launched, world

    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    assert launched() is None and world() is None
    assert "mpi4py.MPI" not in sys.modules
    assert launched({"OMPI_COMM_WORLD_SIZE": "3"}) == 3 and launched({"MPI_LOCALNRANKS": "2"}) == 0
