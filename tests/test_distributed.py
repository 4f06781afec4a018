"""Data-parallel training over MPI (issue 13), through real ``mpiexec`` runs.

Each MPI test starts ``mpiexec -n 2`` or ``-n 3`` in a subprocess with a
timeout (a hang is a failure, never a wait), running tests/mpi_scenarios.py
on every rank; the ranks write their reports to files, which the test
compares. MPI is never initialised in the pytest process itself. The MPI
tests skip, saying why, only where mpi4py or mpiexec is missing or MPI does
not start; the rest of the file (sampler, buckets, signatures, set_gradients)
runs everywhere, in process, with ``LocalComm``.

Three ranks on a 2-core machine oversubscribe it: every rank runs one BLAS
thread, and MPICH's progress loop yields the core when it has nothing to do
(``MPIR_CVAR_CH4_PROGRESS_THROTTLE``), so the runs stay quick under load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from corgi import Array, arr
from corgi.array import get_gradients, set_gradients
from corgi.distributed import DataParallel, LocalComm, ShardedSampler
from corgi.distributed.buckets import Reducer, plan
from corgi.distributed.signature import Signature, first_difference

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "mpi_scenarios.py"
RUN_TIMEOUT = 60  # seconds for one mpiexec run; a healthy one takes about one


# -- launching ranks ----------------------------------------------------------


def _find_mpiexec() -> str | None:
    # the mpich wheel puts mpiexec beside the interpreter, which need not be on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("mpiexec", path=path)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env.setdefault("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")
    return env


@pytest.fixture(scope="module")
def mpiexec() -> list[str]:
    """The mpiexec command line prefix, or a skip saying what is missing."""
    return mpiexec_prefix()


def mpiexec_prefix() -> list[str]:
    """The mpiexec command line prefix, or a skip saying what is missing (for the fixtures)."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install '.[mpi]': mpi4py and mpich)")
    launcher = _find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec beside the interpreter or on PATH (pip install mpich)")
    probe = subprocess.run(
        [sys.executable, "-c", "from mpi4py import MPI; print(MPI.Get_library_version())"],
        check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=_environment(),
    )
    if probe.returncode != 0:
        pytest.skip(f"mpi4py cannot load an MPI library: {probe.stderr.strip().splitlines()[-1:]}")
    prefix = [launcher]
    if "Open MPI" in probe.stdout:
        prefix.append("--oversubscribe")  # three ranks on fewer cores
    return prefix


def run_ranks(mpiexec: list[str], ranks: int, scenario: str, out: Path, *options: str, runner: tuple[str, ...] = ()):
    """Run ``scenario`` on ``ranks`` ranks; the finished process and the wall time it took."""
    out.mkdir(parents=True, exist_ok=True)
    command = [*mpiexec, "-n", str(ranks), sys.executable, *runner, str(SCENARIOS), scenario, "--out", str(out), *options]
    env = _environment()
    if os.geteuid() == 0 and "--oversubscribe" in mpiexec:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    start = time.monotonic()
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{' '.join(command)} did not finish within {RUN_TIMEOUT} s (a hang):\n{expired.stderr}")
    return done, time.monotonic() - start


def reports(mpiexec: list[str], ranks: int, scenario: str, out: Path, *options: str) -> list[dict]:
    done, _ = run_ranks(mpiexec, ranks, scenario, out, *options)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    found = [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(ranks)]
    assert [report["rank"] for report in found] == list(range(ranks))
    return found


# -- training across ranks ----------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("ranks", "dtype", "reduction", "count", "workers"),
    [
        (2, "float64", "allreduce", 101, 0),  # last batch of 1: rank 1 has none of it
        (2, "float64", "allreduce", 101, 2),  # buckets sent from the engine's worker threads
        (3, "float64", "reduce-broadcast", 103, 1),  # batches of 20 split 7, 7, 6; last of 3 split 1, 1, 1
        (3, "float32", "allreduce", 101, 0),  # last batch of 1: ranks 1 and 2 skip
    ],
)
def test_ranks_stay_identical_and_match_one_process(mpiexec, tmp_path, ranks, dtype, reduction, count, workers):
    found = reports(mpiexec, ranks, "train", tmp_path, "--dtype", dtype, "--reduction", reduction,
                    "--count", str(count), "--batch", "20", "--epochs", "2", "--workers", str(workers))
    steps = 2 * -(-count // 20)
    # every rank began from its own random parameters; after the wrap and after every step, all are bitwise equal
    digests = [report["digests"] for report in found]
    assert len(digests[0]) == steps + 1
    assert all(theirs == digests[0] for theirs in digests[1:])
    assert len(set(digests[0])) == steps + 1  # and every step changed them
    # every rank reports the same global mean loss, and it is one process's loss on the same batch
    losses = [report["losses"] for report in found]
    assert all(theirs == losses[0] for theirs in losses[1:])
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(losses[0], found[0]["single_losses"], rtol=tolerance)
    assert found[0]["parameter_error"] < tolerance
    # the sampler: each epoch, the ranks' shares are disjoint and cover every example once
    for epoch in range(2):
        seen = sorted(index for report in found for index in report["seen"][epoch])
        assert seen == list(range(count))
    # rank 0 wrote the checkpoint; every rank read the same parameters back
    for report in found:
        assert report["checkpoint"]["before"] != report["checkpoint"]["after"]
        assert report["checkpoint"]["after"] == found[0]["checkpoint"]["saved"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_that_wrap_different_models_all_get_the_first_difference(mpiexec, tmp_path, ranks):
    found = reports(mpiexec, ranks, "disagree", tmp_path)
    last = ranks - 1
    others = f"rank {last}"
    expected = [
        f"DataParallel: the ranks disagree: parameter 0 ('0.weights') has dimensions (64, 16) on rank 0 but (64, 17) on {others}",
        f"DataParallel: the ranks disagree: parameter 0 ('0.weights') has dtype float64 on rank 0 but float32 on {others}",
        f"DataParallel: the ranks disagree: bucket_bytes is 8192 on rank 0 but 4096 on {others}",
        f"DataParallel: the ranks disagree: rank 0 has 3 parameters but {others} has 2",
        f"DataParallel: the ranks disagree: optimizer is 'Momentum' on rank 0 but 'Adam' on {others}",
    ]
    for report in found:
        assert report["errors"] == expected
    # after five refused wraps the ranks are still in step: the fifth works and broadcasts rank 0's parameters
    assert len({report["digest"] for report in found}) == 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3])
def test_gradients_are_weighted_by_share_and_unused_parameters_get_none(mpiexec, tmp_path, ranks):
    found = reports(mpiexec, ranks, "unused", tmp_path)
    total = ranks * (ranks + 1) // 2  # rank r has r + 1 examples
    for report in found:
        # mean loss over the global batch: rank 0's examples have loss 8 (w.w + b), the others 5 (w.w)
        assert report["local_loss"] == (8.0 if report["rank"] == 0 else 5.0)
        assert report["mean_loss"] == pytest.approx((1 * 8 + (total - 1) * 5) / total, rel=1e-15)
        w, b, c = report["gradients"]
        assert w == [2.0, -4.0]  # every rank's 2w, weights summing to 1
        assert b == pytest.approx([1 / total], rel=1e-15)  # only rank 0's share of the batch saw b
        assert c is None  # no rank used c: no gradient, as in one process
        b_after = 3.0 - 0.5 / total
        assert report["second_loss"] == 0.0  # only rank 0 had examples: sum(w * b) with w = 0
        assert report["parameters"] == [[-b_after / 2, -b_after / 2], [b_after], [5.0]]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("ranks", "runner"),
    [(2, ()), (3, ()), (3, ("-m", "mpi4py"))],
    ids=["plain-2", "plain-3", "mpi4py-3"],
)
def test_a_rank_that_raises_ends_every_rank_within_seconds(mpiexec, tmp_path, ranks, runner):
    done, elapsed = run_ranks(mpiexec, ranks, "abort", tmp_path, runner=runner)
    ended = time.time()
    assert done.returncode != 0
    assert "RuntimeError: rank fails on purpose" in done.stderr
    assert not list(tmp_path.glob("rank-*.json"))  # no rank finished its steps
    raised = float((tmp_path / "raised").read_text())
    # measured here: about 0.1 s from the raise to mpiexec's exit
    assert ended - raised < 10.0, f"the abort took {ended - raised:.1f} s"
    assert elapsed < RUN_TIMEOUT


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("ranks", "workers", "level"), [
    (2, 0, "multiple"), (2, 1, "multiple"), (2, 2, "multiple"), (3, 2, "multiple"), (2, 2, "funneled"), (3, 1, "serialized"),
])
def test_buckets_go_out_during_the_pass_from_the_threads_that_finish_them(mpiexec, tmp_path, ranks, workers, level):
    found = reports(mpiexec, ranks, "threads", tmp_path, "--workers", str(workers), "--thread-level", level)
    levels = {"serialized": 2, "funneled": 1, "multiple": 3}  # MPI_THREAD_*, as MPICH gives them
    for report in found:
        assert report["thread_level"] == levels[level]
        assert report["digests"] == found[0]["digests"]  # bitwise identical on every rank, after every step
        workers_called = [name for name in report["callers"] if name.startswith("corgi-worker")]
        if level == "funneled":
            # MPI calls only from the main thread: a bucket finished on a worker waits for the pass to end
            assert report["callers"] == ["MainThread"]
        else:
            # every bucket started before the pass returned, each from the thread that finished it, but
            # the last, which carries the step's status and goes out when the pass is over (finish)
            assert report["during_pass"] == [report["buckets"] - 1] * 6, report
            assert report["after_finish"] == [report["buckets"]] * 6, report
            if workers == 0:
                assert not workers_called, report
    if level != "funneled" and workers > 0:
        # a worker that finishes a bucket's last gradient starts it, when the buckets before it are
        # out (whether it is the caller or a worker that gets there first varies: across the ranks
        # and six steps, workers start some)
        assert any(name.startswith("corgi-worker") for report in found for name in report["callers"]), found
    assert len(set(found[0]["digests"])) == 7
    assert found[0]["parameter_error"] < 1e-12  # one process, workers=0, the same global batches


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("ranks", "workers"), [(2, 0), (2, 1), (2, 2), (3, 0), (3, 2)])
def test_a_pass_that_fails_on_one_rank_fails_the_step_everywhere_and_training_goes_on(mpiexec, tmp_path, ranks, workers):
    found = reports(mpiexec, ranks, "fail", tmp_path, "--workers", str(workers))
    last = ranks - 1
    for report in found:
        failed = {outcome["step"]: outcome for outcome in report["outcomes"] if "error" in outcome}
        assert sorted(failed) == [2, 4]  # every other step trained
        # step 2: the last rank's backward pass raised, after some of its buckets had gone out
        own = "FloatingPointError" if report["rank"] == last else "StepFailed"
        assert failed[2]["error"] == own
        if own == "StepFailed":
            assert failed[2]["failed_rank"] == last
            assert failed[2]["message"] == f"DataParallel: rank {last}'s step failed, so no rank changed its parameters or gradients"
        # step 4: rank 0's forward pass raised
        assert failed[4]["error"] == ("FloatingPointError" if report["rank"] == 0 else "StepFailed")
        for outcome in failed.values():
            assert outcome["unchanged"] and not any(outcome["gradients"]) and not outcome["busy"]
        losses = [outcome["loss"] for outcome in report["outcomes"] if "loss" in outcome]
        assert losses == [outcome["loss"] for outcome in found[0]["outcomes"] if "loss" in outcome]
    assert len({report["digest"] for report in found}) == 1
    started = found[last]["started_before_failing"]
    assert len(started) == 1 and started[0] <= found[last]["buckets"]
    if workers == 0:  # the order of a serial pass: the last layer's two buckets were out before the failure
        assert started == [2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3])
def test_rank_0s_optimizer_state_reaches_every_rank_at_the_wrap_and_through_checkpoints(mpiexec, tmp_path, ranks):
    found = reports(mpiexec, ranks, "optimizer", tmp_path)
    for report in found:
        # rank 0 alone had trained (Adam moments, step 2, learning rate 0.01; the others 0.5 and no state)
        assert "'step': 2" in report["layout"] and "'learning_rate': 0.01" in report["layout"]
        for key in ("wrapped", "trained", "loaded", "continued"):
            assert report[key] == found[0][key]  # parameters, moments, steps and settings alike everywhere
        assert report["loaded"] == report["trained"]  # the checkpoint holds it all
        assert report["copy_continued"] == report["continued"]  # a resumed copy trains on bitwise alike
        assert report["refused"] == f"DataParallel.load: ranks [{ranks - 1}] read other values from <file> than rank 0 (is it the same file on every node?)"
        assert report["kept"]  # every rank kept its whole state, the ranks that had loaded included


@pytest.mark.timeout(120)
def test_the_script_in_docs_distributed_trains_under_mpiexec(mpiexec, tmp_path):
    ranks = 2  # three ranks on this 2-core machine take 5 s here; the uneven splits are tested above
    text = (ROOT / "docs" / "distributed.md").read_text()
    fence = "```python no-run: it runs under mpiexec"
    start = text.index("\n", text.index(fence)) + 1
    script = tmp_path / "train_parallel.py"
    script.write_text(text[start : text.index("```", start)])
    env = _environment()
    env["CORGI_WORKERS"] = "0"
    done = subprocess.run([*mpiexec, "-n", str(ranks), sys.executable, str(script)], check=False,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"epoch {epoch}" for epoch in range(10)] + ["held-out accuracy"]
    assert float(lines[-1].split(": ")[1]) > 0.9  # only rank 0 printed, and it learned
    assert (tmp_path / "digits-parallel.npz").exists()


@pytest.mark.timeout(120)
def test_benchmark_f_runs_and_corgi_computes_what_the_numpy_floor_does(mpiexec, tmp_path):
    losses = {}
    for peer in ("numpy", "corgi"):
        command = [*mpiexec, "-n", "2", sys.executable, "-m", "benchmarks.workloads.dataparallel", peer,
                   "--batch", "16", "--warmup", "1", "--repeats", "3", "--exchanges", "3"]
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              env=_environment(), cwd=ROOT)
        record = json.loads(done.stdout.strip().splitlines()[-1])
        assert record["status"] == "ok", record
        losses[peer] = (record["results"]["first_loss"], record["results"]["last_loss"])
    np.testing.assert_allclose(losses["corgi"], losses["numpy"], rtol=1e-5)
    assert losses["corgi"][1] < losses["corgi"][0]


@pytest.mark.timeout(120)
def test_benchmark_f_deep_peer_times_the_three_steps_of_a_six_bucket_network(mpiexec):
    command = [*mpiexec, "-n", "2", sys.executable, "-m", "benchmarks.workloads.dataparallel", "deep",
               "--batch", "8", "--warmup", "1", "--repeats", "4"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          env=_environment(), cwd=ROOT)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["status"] == "ok", record
    results = record["results"]
    # the three big weights each alone, the small gradients and the last weight packed, last first
    # plan's order, but the first layer's bias, the last small bucket, carries the status and goes last
    assert results["buckets"] == [[7, 6, 5], [4], [3], [2], [0], [1]]
    assert all(results[key] > 0 for key in ("during_ms", "after_ms", "local_ms"))


# -- in one process -------------------------------------------------------------


def test_the_abort_hook_reports_the_error_then_aborts_and_is_installed_once(monkeypatch, capsys):
    from corgi.distributed import comm as comm_module
    from corgi.distributed import install_abort_hook

    class TwoRanks(LocalComm):
        size = 2

        def __init__(self):
            self.aborted = []

        def Abort(self, code=1):
            self.aborted.append(code)

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    monkeypatch.setattr(comm_module, "ABORT_GRACE", 0.0)
    link = TwoRanks()
    assert install_abort_hook(link) is True
    hook = sys.excepthook
    assert install_abort_hook(link) is True and sys.excepthook is hook  # not wrapped twice
    try:
        raise RuntimeError("rank 1 fails")
    except RuntimeError as error:
        hook(type(error), error, error.__traceback__)
    assert "RuntimeError: rank 1 fails" in capsys.readouterr().err  # the traceback first, whole
    hook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert link.aborted == [1, 130]  # then every rank ends: 130 for Ctrl-C, as a shell reports it
    assert install_abort_hook(LocalComm()) is False  # one process: nothing to abort


def test_import_corgi_loads_neither_distributed_nor_mpi4py():
    code = (
        "import sys, corgi, corgi.model, corgi.train; "
        "assert 'corgi.distributed' not in sys.modules and 'mpi4py' not in sys.modules; "
        "import corgi.distributed; assert 'mpi4py' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_missing_mpi4py_names_the_extra(tmp_path):
    # a directory that shadows mpi4py with a package that cannot be imported
    (tmp_path / "mpi4py").mkdir()
    (tmp_path / "mpi4py" / "__init__.py").write_text("raise ImportError('no MPI here')\n")
    code = (
        "from corgi import Array\n"
        "from corgi.distributed import DataParallel\n"
        "try:\n    DataParallel([Array([1.0]).tracked()])\n"
        "except ModuleNotFoundError as error:\n    print(error.name, '|', error)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, env=env)
    name, message = done.stdout.strip().split(" | ")
    assert name == "mpi4py"
    assert "corgi.distributed needs mpi4py" in message and "[mpi]'" in message and "no MPI here" in message


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize(("count", "batch"), [(10, 4), (7, 7), (5, 8), (13, 3)])
def test_sampler_shares_cover_every_example_once_per_epoch(size, count, batch):
    samplers = [ShardedSampler(count, batch, rank, size, seed=11) for rank in range(size)]
    for epoch in range(3):
        shares = [sampler.batches(epoch) for sampler in samplers]
        assert all(len(share) == len(samplers[0]) for share in shares)  # every rank takes part in every step
        for step, batch_indices in enumerate(samplers[0].global_batches(epoch)):
            parts = [share[step] for share in shares]
            assert np.concatenate(parts).tolist() == batch_indices.tolist()  # disjoint, in order, nothing lost
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        everything = np.concatenate([part for share in shares for part in share])
        assert sorted(everything.tolist()) == list(range(count))


def test_sampler_is_reproducible_and_reshuffles_each_epoch():
    first = ShardedSampler(50, 8, 1, 3, seed=5)
    again = ShardedSampler(50, 8, 1, 3, seed=5)
    assert [a.tolist() for a in first.batches(2)] == [b.tolist() for b in again.batches(2)]
    assert first.order(0).tolist() != first.order(1).tolist()
    assert first.order(0).tolist() != ShardedSampler(50, 8, 1, 3, seed=6).order(0).tolist()
    assert ShardedSampler(50, 8, shuffle=False).order(4).tolist() == list(range(50))


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((0, 4), ValueError, "ShardedSampler: count must be a whole number >= 1, got 0"),
        ((10, 2.0), TypeError, "ShardedSampler: batch_size must be a whole number, got 2.0 (float)"),
        ((10, 4, 3, 3), ValueError, "ShardedSampler: rank must be below size 3, got 3"),
        ((10, 4, 0, 0), ValueError, "ShardedSampler: size must be a whole number >= 1, got 0"),
    ],
)
def test_sampler_refuses_bad_arguments(arguments, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        ShardedSampler(*arguments)


def test_buckets_take_parameters_last_first_one_dtype_each_and_split_at_the_size():
    f4, f8 = np.dtype("float32"), np.dtype("float64")
    assert plan([(10,), (10,), (10,)], [f8] * 3, bucket_bytes=160) == [[2, 1], [0]]
    assert plan([(10,), (10,), (10,)], [f8] * 3, bucket_bytes=1) == [[2], [1], [0]]  # each alone, none lost
    assert plan([(4,), (4,), (4,), (4,)], [f8, f4, f8, f4], bucket_bytes=1 << 20) == [[3, 1], [2, 0]]
    # the MLP of benchmark (f) with the default: small gradients together, the big weight alone
    from corgi.distributed import DEFAULT_BUCKET_BYTES

    assert plan([(784, 256), (256,), (256, 10), (10,)], [f4] * 4, DEFAULT_BUCKET_BYTES) == [[3, 2, 1], [0]]


def test_reducer_sends_a_lone_row_major_gradient_without_a_copy_and_anything_else_copied():
    f8 = np.dtype("float64")
    reducer = Reducer(LocalComm(), [(3, 2), (2, 3)], [f8, f8], bucket_bytes=1)
    alone = np.arange(6.0).reshape(2, 3)
    reducer.gradient_ready(1, alone)
    assert np.shares_memory(reducer.buckets[0].source, alone)  # sent as it is
    column_major = np.asfortranarray(np.arange(6.0).reshape(3, 2))
    reducer.gradient_ready(0, column_major)
    assert reducer.buckets[1].source is reducer.buckets[1].send  # copied in row-major order
    assert not np.shares_memory(reducer.buckets[1].send, column_major)
    reducer.finish()
    (first, second), _ = reducer.wait()
    assert first.tolist() == column_major.tolist() and second.tolist() == alone.tolist()
    assert not first.flags.writeable and not second.flags.writeable


def test_a_lone_gradients_bucket_makes_a_send_buffer_only_when_it_needs_one():
    f8 = np.dtype("float64")
    reducer = Reducer(LocalComm(), [(3, 2), (2, 3)], [f8, f8], bucket_bytes=1)  # bucket 0 holds parameter 1 alone
    lone = reducer.buckets[0]
    for _ in range(2):
        reducer.gradient_ready(1, np.ones((2, 3)))
        reducer.gradient_ready(0, np.ones((3, 2)))
        reducer.finish()
        reducer.wait()
    assert lone.alone and lone._send is None  # every gradient went out as it was: no buffer of its own
    reducer.gradient_ready(1, None)  # no gradient on this rank: it sends zeros, from a buffer made now
    assert lone.source is lone.send and lone.send.tolist() == [0.0] * 6
    reducer.finish()
    summed, _ = reducer.wait()
    assert summed[1] is None  # (and no rank had one)


def _kept_gradient_training(keep):
    """A one-rank DataParallel step after step; with ``keep``, each step's gradients are held past it."""
    from corgi import activation, cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import Momentum

    he = initializer.make_he(rng=1)
    model = Model([Dense(3, 4, he, activation.make_relu()), Dense(4, 2, he)], Momentum(0.1, 0.9),
                  cost.make_softmax_cross_entropy())
    parallel = DataParallel(model, LocalComm(), bucket_bytes=100)  # buckets [3, 2], [1], [0] and the status
    rng = np.random.default_rng(2)
    kept = []
    for _ in range(6):
        x, y = rng.standard_normal((5, 3)), np.eye(2)[rng.integers(0, 2, 5)]
        parallel.forward(x)
        parallel.backward(y)
        parallel.synchronize()
        if keep:
            gradients = get_gradients(parallel.parameters())
            kept.append((gradients, [g.copy() for g in gradients]))
        parallel.update()
    return parallel, kept


def test_receive_buffers_are_reused_once_no_gradient_cut_from_them_is_held():
    parallel, _ = _kept_gradient_training(keep=False)
    assert [[slot.position for slot in bucket.slots] for bucket in parallel._reducer.buckets] == [[3, 2], [1], [0]]
    assert [len(bucket.pool) for bucket in parallel._reducer.buckets] == [1, 1, 1]


def test_a_gradient_held_past_its_step_never_changes():
    # Receive buffers are reused only when nothing refers to them or their pieces any more: a
    # gradient someone keeps is never overwritten by a later step's sums.
    parallel, kept = _kept_gradient_training(keep=True)
    for gradients, copies in kept:
        assert all(np.array_equal(g, c) for g, c in zip(gradients, copies))
    assert len({id(g.base) for gradients, _ in kept for g in gradients}) == 3 * len(kept)  # a buffer each
    pools = [len(bucket.pool) for bucket in parallel._reducer.buckets]
    kept.clear()
    parallel.forward(np.ones((2, 3)))
    parallel.backward(np.eye(2))
    parallel.update()
    assert all(len(bucket.pool) <= 3 for bucket in parallel._reducer.buckets) and pools == [3, 3, 3]


def test_reducer_starts_buckets_in_order_whatever_order_they_are_ready_in():
    started = []

    class Recording(LocalComm):
        def Iallreduce(self, send, receive):
            started.append(send.size)
            return super().Iallreduce(send, receive)

    f8 = np.dtype("float64")
    reducer = Reducer(Recording(), [(1,), (2,), (3,)], [f8] * 3, bucket_bytes=1)  # buckets: [2], [1], [0]
    reducer.gradient_ready(0, np.zeros(1))  # bucket 2 is ready first, but waits for 0 and 1
    reducer.gradient_ready(1, np.zeros(2))
    assert started == []
    reducer.gradient_ready(2, np.zeros(3))
    assert started == [3, 2]  # buckets 0 and 1; the last carries the step's status: it waits for finish
    reducer.finish()
    assert started == [3, 2, 1 + 3 + 5]  # its gradient, the three use flags, and the one rank's record
    gradients, extra = reducer.wait()
    assert [g.tolist() for g in gradients] == [[0.0], [0.0, 0.0], [0.0, 0.0, 0.0]] and extra == 0.0


class _Recording(LocalComm):
    """A one-rank communicator that remembers the receive buffer of every reduction it starts."""

    def __init__(self):
        self.started = []

    def Iallreduce(self, send, receive):
        self.started.append(receive)
        return super().Iallreduce(send, receive)


def _report_from_threads(reducer, gradients, order, threads):
    errors = []

    def report(positions):
        try:
            for position in positions:
                reducer.gradient_ready(int(position), None if position % 7 == 3 else gradients[position])
        except BaseException as error:  # noqa: BLE001 - surfaced by the caller's assertion
            errors.append(error)

    workers = [threading.Thread(target=report, args=(order[worker::threads],)) for worker in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_reducer_takes_gradients_from_many_threads_and_still_starts_buckets_in_order(threads, fast_switching):
    # Round two reports each gradient from whichever engine thread finished it: any order, any thread.
    rng = np.random.default_rng(threads)
    shapes = [tuple(int(d) for d in rng.integers(1, 6, size=rng.integers(1, 3))) for _ in range(40)]
    f8 = np.dtype("float64")
    for _ in range(5):
        comm = _Recording()
        reducer = Reducer(comm, shapes, [f8] * len(shapes), bucket_bytes=64)
        gradients = [np.full(shape, float(position)) for position, shape in enumerate(shapes)]
        assert _report_from_threads(reducer, gradients, rng.permutation(len(shapes)), threads) == []
        assert len(reducer.buckets) > 5
        # each bucket started once, in index order, but the last, the status's carrier: finish sends it
        assert len(comm.started) == len(reducer.buckets) - 1
        assert all(receive is bucket.receive.buffer for receive, bucket in zip(comm.started, reducer.buckets))
        reducer.finish()
        assert len(comm.started) == len(reducer.buckets) and comm.started[-1] is reducer.buckets[-1].receive.buffer
        summed, _ = reducer.wait()
        for position, gradient in enumerate(summed):
            if position % 7 == 3:
                assert gradient is None  # the one rank had none
            else:
                assert gradient.tolist() == gradients[position].tolist()


def test_reducer_refuses_a_gradient_of_the_wrong_shape_or_dtype():
    reducer = Reducer(LocalComm(), [(2,)], [np.dtype("float64")], 1024, where="here")
    with pytest.raises(ValueError, match=r"here: the gradient of parameter 0 has dimensions \(3,\)"):
        reducer.gradient_ready(0, np.zeros(3))
    with pytest.raises(ValueError, match="dtype float32"):
        reducer.gradient_ready(0, np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="reduction must be one of"):
        Reducer(LocalComm(), [(2,)], [np.dtype("float64")], 1024, reduction="sum")


def test_signatures_name_the_first_difference_and_every_rank_that_has_it():
    def signature(*shapes, **options):
        return Signature.of([(f"p{i}", Array.zeros(shape)) for i, shape in enumerate(shapes)], **options)

    same = signature((2,), (3,), reduction="allreduce")
    assert first_difference([same, same, same]) is None
    renamed = Signature(("p0", "q1"), same.shapes, same.dtypes, same.options)
    assert first_difference([same, renamed]) == "parameter 1 ('p1') has name 'p1' on rank 0 but 'q1' on rank 1"
    assert first_difference([same, signature((2,), (4,), reduction="allreduce"), signature((2,), (4,), reduction="allreduce")]) == (
        "parameter 1 ('p1') has dimensions (3,) on rank 0 but (4,) on ranks 1, 2"
    )
    assert first_difference([same, same, signature((2,), (3,), reduction="reduce-broadcast")]) == (
        "reduction is 'allreduce' on rank 0 but 'reduce-broadcast' on rank 2"
    )


def test_set_gradients_checks_everything_before_changing_anything():
    w, b = arr(1.0, 2.0).tracked(), arr(3.0).tracked()
    (w * b).sum().backward()
    before = (w.gradient().numpy().tolist(), b.gradient().numpy().tolist())
    with pytest.raises(ValueError, match="parameter 1 holds float64, its gradient float32"):
        set_gradients([w, b], [np.zeros(2), np.zeros(1, dtype=np.float32)], where="test")
    with pytest.raises(TypeError, match=r"the gradient of parameter 0 must be a numpy array or None, got list"):
        set_gradients([w, b], [[0.0, 0.0], None])
    with pytest.raises(ValueError, match="parameter 0 is not tracked"):
        set_gradients([arr(1.0)], [np.zeros(1)])
    with pytest.raises(ValueError, match="2 parameters but 1 gradients"):
        set_gradients([w, b], [None])
    assert (w.gradient().numpy().tolist(), b.gradient().numpy().tolist()) == before
    set_gradients([w, b], [None, np.array([7.0])])
    assert w.gradient() is None and b.gradient() == arr(7.0)
    (w * b).sum().backward()  # a later pass adds to the set gradient
    assert b.gradient() == arr(10.0)


def test_get_gradients_reads_them_where_they_are_read_only():
    w, b, c = arr(1.0, 2.0).tracked(), arr(3.0).tracked(), arr(4.0)
    (w * b).sum().backward()
    gradients = get_gradients([w, b, c])
    assert gradients[0].tolist() == w.gradient().numpy().tolist() == [3.0, 3.0]
    assert gradients[1].tolist() == [3.0] and gradients[2] is None  # c was never tracked
    with pytest.raises(ValueError, match="read-only"):
        gradients[0][0] = 5.0
    assert w.gradient() == arr(3.0, 3.0)


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("bucket_bytes", [1, 256 * 1024])
def test_one_process_data_parallel_is_plain_training(overlap, bucket_bytes):
    """With one rank, DataParallel's steps are exactly Model's (same bits): the weighting is n / n = 1.

    With ``overlap`` (as on several ranks), the gradients of every bucket but the last are heard
    from the pass's ready hooks, the last bucket's read after it. (The loss it reports is
    (n * loss) / n, which may differ from the loss in the last bit.)
    """
    from corgi import activation, cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import Adam

    def make():
        he = initializer.make_he(rng=3)
        return Model([Dense(4, 8, he, activation.make_tanh()), Dense(8, 3, he)], Adam(0.01), cost.make_softmax_cross_entropy())

    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    y = np.eye(3)[labels]
    plain, wrapped = make(), DataParallel(make(), LocalComm(), bucket_bytes=bucket_bytes)
    wrapped._overlap = overlap
    heard = []
    if overlap:
        ready = wrapped._reducer.gradient_ready
        wrapped._reducer.gradient_ready = lambda position, total: heard.append(position) or ready(position, total)
    for start in range(0, 30, 7):
        plain.forward(x[start : start + 7])
        expected = plain.backward(y[start : start + 7])
        plain.update()
        assert wrapped.step(x[start : start + 7], y[start : start + 7]) == pytest.approx(expected, rel=1e-15)
    assert all(a == b for a, b in zip(plain.parameters(), wrapped.parameters()))
    late = sorted(wrapped._reducer.late)
    assert late == ([0] if bucket_bytes == 1 else [0, 1, 2, 3])  # the last bucket's
    # heard from the hooks: the parameters outside the last bucket, once a step (none with one bucket)
    assert sorted(heard) == sorted([position for position in range(4) if position not in late] * 5 * overlap)


def test_data_parallel_refuses_what_it_cannot_train():
    from corgi import cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import GradientDescent

    model = Model([Dense(2, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
    with pytest.raises(TypeError, match="a Model brings its own optimizer"):
        DataParallel(model, LocalComm(), optimizer=GradientDescent(0.1))
    with pytest.raises(TypeError, match="parameter 1 must be an Array, got float"):
        DataParallel([arr(1.0).tracked(), 2.0], LocalComm())
    with pytest.raises(TypeError, match="expects a Model or a sequence of Arrays, got int"):
        DataParallel(3, LocalComm())
    with pytest.raises(ValueError, match="bucket_bytes must be a whole number >= 1, got 0"):
        DataParallel(model, LocalComm(), bucket_bytes=0)
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator or LocalComm"):
        DataParallel(model, comm=object())
    parallel = DataParallel(model, LocalComm())
    with pytest.raises(ValueError, match="DataParallel.backward: no step under way"):
        parallel.backward(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="nothing to synchronize"):
        parallel.synchronize()
    parallel.forward(np.ones((2, 2)))
    with pytest.raises(ValueError, match="forward\\(\\) started a step that backward\\(\\) has not finished"):
        parallel.update()
    parallel.backward(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="no step under way; call forward"):
        parallel.backward(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="a step is already under way"):
        parallel.forward(np.ones((2, 2)))
    with pytest.raises(ValueError, match="a step is already under way"):
        parallel.skip()
    parallel.update()
    with pytest.raises(ValueError, match="the input holds no example; call skip"):
        parallel.forward(np.zeros((0, 2)))
    parallel.forward(np.ones((3, 2)))
    before = parallel.digest()
    with pytest.raises(ValueError, match="count is 2, but forward\\(\\) saw 3 examples"):
        parallel.backward_loss(parallel.parameters()[1] * 1.0, 2)
    # an error once the step has started ends the step (on every rank): nothing changed, a new one can start
    assert parallel.digest() == before and all(p.gradient() is None for p in parallel.parameters())
    with pytest.raises(ValueError, match="no step under way"):
        parallel.backward(np.zeros((3, 1)))
    parallel.forward(np.ones((3, 2)))
    parallel.backward(np.zeros((3, 1)))
    parallel.update()
    with pytest.raises(ValueError, match="loss must hold one value"):
        parallel.backward_loss(parallel.parameters()[0] * 1.0, 1)
    with pytest.raises(ValueError, match="count must be a whole number >= 1, got 0"):
        parallel.backward_loss(parallel.parameters()[1] * 1.0, 0)
    listed = DataParallel([arr(1.0).tracked()], LocalComm())
    with pytest.raises(TypeError, match="DataParallel.forward: needs a wrapped Model"):
        listed.forward(np.ones((1, 1)))
    with pytest.raises(TypeError, match="DataParallel.save: needs a wrapped Model"):
        listed.save("nowhere.npz")
    with pytest.raises(TypeError, match="no optimizer"):
        listed.update()


def test_load_is_all_or_nothing(tmp_path):
    from corgi import cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import GradientDescent

    def make(inputs):
        return Model([Dense(inputs, 2, initializer.make_he(rng=inputs))], GradientDescent(0.1), cost.make_mse())

    DataParallel(make(3), LocalComm()).save(tmp_path / "three.npz")
    parallel = DataParallel(make(4), LocalComm())
    before = parallel.digest()
    with pytest.raises(ValueError, match="Model.load"):
        parallel.load(tmp_path / "three.npz")
    assert parallel.digest() == before
    with pytest.raises(OSError):
        DataParallel(make(3), LocalComm()).save(tmp_path / "missing" / "dir" / "model.npz")
