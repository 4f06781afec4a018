"""The benchmark driver's bookkeeping (no timing here: records are made up), and the CNN profile runs.

How rounds are ordered and merged, and how table (a) turns per-round
records into ratios, decide what the published figures mean, so they are
tested like the library.
"""

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report, run


def test_rotated_moves_every_row_through_every_slot():
    jobs = run.plan(["a", "b"], quick=True)
    labels = [label for _, label, _ in run.A_ROWS]
    seen = {}
    for r in range(len(labels)):
        order = run.rotated(jobs, r)
        assert sorted(map(id, order)) == sorted(map(id, jobs))  # the same jobs, reordered
        block = [j.label for j in order if j.key == "a" and j.group == "float32" and j.threads == 2]
        seen[r] = block[0]
        assert sorted(block) == sorted(labels)
    assert sorted(seen.values()) == sorted(labels)  # each row ran first once
    assert run.rotated(jobs, 0) == jobs


def test_plan_a_has_the_in_place_floor_and_the_model_paths():
    jobs = [j for j in run.plan(["a"], quick=True) if j.group == "float64" and j.threads == 1]
    options = {j.label: j.options for j in jobs}
    assert "--inplace" in options["numpy in place"] and "--inplace" not in options["numpy"]
    assert options["corgi Model, seed"][-2:] == ["--path", "seed"]
    assert options["corgi Model, fused"][-2:] == ["--path", "fused"]


def record(ms, status="ok"):
    return {"status": status, "results": {"ms_per_step": ms, "first_loss": 2.0, "last_loss": 1.0}}


def test_merge_rounds_keeps_the_fastest_and_every_round():
    merged = run.merge_rounds([record(1.5), record(0.8), record(1.1)])
    assert merged["results"]["ms_per_step"] == 0.8
    assert merged["results"]["first_loss"] == 2.0
    assert [r["ms_per_step"] for r in merged["rounds"]] == [1.5, 0.8, 1.1]
    failed = run.merge_rounds([record(1.0), {"status": "error", "error": "boom"}])
    assert failed["status"] == "error" and failed["error"] == "boom"


def rows_a(times, dtype="float32"):
    """Merged (a) records from {(peer, threads): [ms per round]}."""
    recs = []
    for (peer, threads), rounds in times.items():
        rec = run.merge_rounds([record(ms) for ms in rounds])
        rec.update(key="a", peer=peer, label=peer, group=dtype, threads_setting=threads)
        recs.append(rec)
    return recs


def cells(table, peer):
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {peer} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_a_ratios_use_each_peers_best_setting_and_fastest_round():
    recs = rows_a({
        ("numpy", 1): [1.2, 1.2], ("numpy", 2): [0.7, 1.4],
        ("torch", 1): [1.5, 1.4], ("torch", 2): [0.9, 1.3],
        ("corgi", 1): [1.3, 1.3], ("corgi", 2): [1.5, 0.8],
    })
    table = report.table_a(recs)
    corgi = cells(table, "corgi")
    assert corgi[2:6] == ["1.30", "0.80", "0.80", "1.14x"]  # 0.8 / 0.7
    assert corgi[6] == "1.86x 0.67x"  # round by round: 1.3 / 0.7, then 0.8 / 1.2
    assert corgi[7] == "0.93x / 0.89x"  # against torch at 1 and at 2 threads
    assert cells(table, "autograd")[2:4] == ["missing", "missing"]
    assert "unreliable" not in table


def test_table_a_says_when_two_threads_never_helped_numpy():
    recs = rows_a({("numpy", 1): [1.2], ("numpy", 2): [1.3], ("corgi", 1): [1.3], ("corgi", 2): [1.4]})
    assert "2-thread figures are unreliable" in report.table_a(recs)


def test_short_workloads_run_in_rounds_and_only_a_pins_malloc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert set(run.ROUNDED) == {"a", "b", "e", "f"} and run.MEDIAN_OF_ROUNDS == ("e",)
    assert run.PINNED_MALLOC == ("a",)
    assert "MALLOC_MMAP_THRESHOLD_" in run.child_env(1, pin_malloc=True)
    assert "MALLOC_MMAP_THRESHOLD_" not in run.child_env(2)
    assert run.child_env(2)["OPENBLAS_NUM_THREADS"] == "2"


def test_workload_f_runs_peers_side_by_side_under_mpiexec():
    jobs = [job for job in run.plan(["f"], quick=False) if job.key == "f"]
    assert {job.group for job in jobs} == {"batch 128", "batch 1024"}
    settings = {(job.peer, job.ranks, job.threads) for job in jobs if job.group == "batch 128"}
    assert settings == {(peer, ranks, threads) for peer in ("numpy", "corgi")
                        for ranks, threads in ((1, 1), (1, 2), (2, 1))} | {("allreduce", 2, 1)}
    assert all(job.ranks for job in jobs)


def f_record(peer, ranks, threads, **results):
    rec = {"status": "ok", "results": dict(first_loss=2.0, last_loss=1.0, **results)}
    rec.update(key="f", peer=peer, label=f"{peer} {ranks}", group="batch 128", threads_setting=threads,
               ranks_setting=ranks)
    return rec


def test_table_f_compares_the_exchange_with_the_raw_allreduce_and_corgi_with_the_floor():
    recs = [
        f_record("numpy", 1, 1, ms_per_step=2.0), f_record("corgi", 1, 1, ms_per_step=2.2),
        f_record("numpy", 1, 2, ms_per_step=1.6), f_record("corgi", 1, 2, ms_per_step=1.8),
        f_record("numpy", 2, 1, ms_per_step=1.0),
        f_record("corgi", 2, 1, ms_per_step=1.2, exchange_us=220.0, raw_us=200.0, counts_us=5.0,
                 interleaved_ms=1.1, interleaved_floor_ms=1.0, exchange_loop_us=250.0, raw_loop_us=200.0,
                 exchange_loop_median_call_us=230.0, raw_loop_median_call_us=200.0,
                 in_step={"corgi": {"wait_us": 300.0, "skew_us": 90.0, "after_last_us": 205.0},
                          "floor": {"wait_us": 250.0, "skew_us": 60.0, "after_last_us": 185.0}}),
        f_record("allreduce", 2, 1, allreduce_us=210.0, flat_allreduce_us=190.0),
    ]
    table = report.table_f(recs)
    corgi2 = cells(table, "corgi 2")
    # 1.2 / 1.0 across rows, 1.1 / 1.0 alternating, 1.8 / 1.2 = 1.5x over one rank, 220 / 200 in the same run
    assert corgi2[2:9] == ["1.20", "1.20x", "1.10x", "1.50x", "220", "1.10x", "5.00"]
    assert "exchange / raw allreduce of the same buckets: 1.10x (220 vs 200 us; goal <= 1.10)" in table
    assert "corgi 2-rank step / numpy 2-rank step: 1.10x alternating in one run, 1.20x from separate rows" in table
    assert ("exchange back to back without barriers: 250 us a call on average against the raw allreduce's 200 "
            "(1.25x); the median call 230 against 200 (1.15x).") in table
    assert ("corgi waits 300 us for the sums: 90.0 the other rank's lateness (skew), 205 the exchange once both are in; "
            "the floor waits 250 us for the sums: 60.0 the other rank's lateness (skew), 185 the exchange") in table


def training_record(peer, label, net, threads, seconds, accuracies, loss=0.5):
    results = {"net": net, "epochs": len(seconds), "seconds": seconds, "accuracies": accuracies,
               "losses": [loss], "target": 0.95, "total_s": seconds[-1], "final_accuracy": accuracies[-1],
               "check": loss,
               "seconds_to_target": next((s for s, a in zip(seconds, accuracies) if a >= 0.95), None)}
    return {"status": "ok", "results": results, "key": "e", "peer": peer, "label": label, "group": net,
            "threads_setting": threads}


def test_training_rounds_merge_to_their_median_and_keep_a_target_never_reached():
    rounds = [training_record("corgi", "corgi", "mlp", 1, [s, 2 * s], [0.9, 0.96]) for s in (1.0, 3.0, 2.0)]
    merged = run.merge_rounds(rounds, pick=statistics.median)
    assert merged["results"]["total_s"] == 4.0 and merged["results"]["seconds_to_target"] == 4.0
    assert merged["results"]["seconds"] == [1.0, 2.0]  # lists are kept from the first round
    never = [training_record("corgi", "corgi", "mlp", 1, [s], [0.9]) for s in (1.0, 2.0)]
    assert run.merge_rounds(never, pick=max)["results"]["seconds_to_target"] is None


def test_table_e_times_to_the_target_and_ratios_to_torch():
    recs = [
        training_record("numpy", "numpy", "mlp", 1, [1.0, 2.0, 3.0], [0.90, 0.95, 0.96]),
        training_record("torch", "torch", "mlp", 1, [2.0, 4.0, 6.0], [0.90, 0.95, 0.96]),
        training_record("corgi", "corgi", "mlp", 1, [1.5, 3.0, 4.5], [0.90, 0.95, 0.96]),
        training_record("corgi", "corgi, seed's cost", "mlp", 1, [2.0, 4.0, 6.0], [0.90, 0.94, 0.94], loss=0.6),
    ]
    table = report.table_e(recs)
    corgi = cells(table, "mlp")  # the first mlp row is numpy's
    assert corgi[1] == "numpy" and corgi[5] == "2.00 (epoch 2)" and corgi[6] == "0.50x"
    line = next(ln for ln in table.splitlines() if "| corgi |" in ln)
    values = [c.strip() for c in line.strip("|").split("|")]
    assert values[3:9] == ["0.9600", "4.50", "3.00 (epoch 2)", "0.75x", "0.75x", "ok"]
    seed = next(ln for ln in table.splitlines() if "seed's cost" in ln)
    assert "not reached (0.95)" in seed and "MISMATCH" in seed
    assert "mlp: 3 epochs, target accuracy 0.95" in table


def test_training_jobs_pair_every_peer_per_network_and_thread_count():
    everything = [job for job in run.plan(["e"], quick=True) if job.key == "e"]
    jobs = [job for job in everything if not job.group.startswith("job")]
    assert sorted({(job.group, job.threads) for job in jobs}) == [("cnn", 1), ("cnn", 2), ("mlp", 1), ("mlp", 2)]
    main_jobs = [job for job in everything if job.group.startswith("job")]
    assert [(job.label, job.threads) for job in main_jobs] == [
        ("python -m corgi.train --model mlp", 1), ("python -m corgi.train --model mlp", 2),
        ("python -m corgi.train --model cnn", 1), ("python -m corgi.train --model cnn", 2)]
    assert all("--job" in job.options and "float64" in job.options for job in main_jobs)
    mlp = [job.label for job in jobs if job.group == "mlp" and job.threads == 1]
    assert mlp == ["numpy", "torch", "corgi", "corgi, seed's cost"]
    assert all("--dtype" in job.options and "float64" in job.options for job in jobs)


def test_abwide_ratios_are_to_the_better_numpy_option_of_each_block():
    from benchmarks import abwide

    record = {"threads": 2, "load_before": [0, 0, 0], "load_after": [0, 0, 0], "checks": {}, "check_ok": True,
              "forward_ms": {"numpy serial": [1, 1], "numpy pool": [1, 1], "corgi": [1, 1]},
              "total_ms": {"numpy serial": [10.0, 30.0], "numpy pool": [20.0, 15.0], "corgi": [12.0, 30.0]}}
    table = abwide.render(record)
    assert "| corgi | 1.0 | 21.0 | 1.60x (1.20-2.00) |" in table  # 12 / 10 and 30 / 15
    assert "| numpy serial | 1.0 | 20.0 | 1.50x (1.00-2.00) |" in table


def test_abwide_runs_every_peer_in_one_process_with_agreeing_results():
    import subprocess
    import sys

    from benchmarks import abwide, run

    proc = subprocess.run([sys.executable, "-m", "benchmarks.abwide", "--rows", "16", "--cols", "32", "--branches", "3",
                           "--blocks", "2", "--repeats", "1", "--threads", "1"],
                          cwd=run.ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "check values agree" in proc.stdout
    for peer in ("numpy serial", "numpy pool", "corgi"):
        assert f"| {peer} |" in proc.stdout
    assert abwide.blas_setter() is not None  # numpy's OpenBLAS, whose thread count the child sets


@pytest.mark.timeout(300)
def test_ab_times_by_the_stepping_threads_cpu_on_one_blas_thread_only():
    import subprocess
    import sys

    from benchmarks import run

    base = [sys.executable, "-m", "benchmarks.ab", "--dtypes", "float64", "--blocks", "2", "--steps", "2",
            "--warmup", "1", "--batch", "8", "--peers", "numpy in place,corgi seed", "--clock", "thread"]
    proc = subprocess.run([*base, "--threads", "1"], cwd=run.ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "times are the stepping thread's CPU time" in proc.stdout
    assert "| float64 | 1 | corgi seed |" in proc.stdout and "| ok |" in proc.stdout
    refused = subprocess.run([*base, "--threads", "1,2"], cwd=run.ROOT, capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode != 0 and "--clock thread needs --threads 1" in refused.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("options, expected", [
    (["--steps", "2"], ("conv", "max_pool", "backward 1", "backward 2", "ms wall", "all primitives")),
    (["--steps", "2", "--cpu"], ("conv", "max_pool", "ms CPU", "all primitives")),
    (["--vs-torch", "--blocks", "2", "--per-block", "1"], ("corgi: wall", "torch: wall", "corgi / torch")),
])
def test_cnn_profile_names_the_image_primitives_and_compares_with_torch(options, expected):
    if "--vs-torch" in options:
        pytest.importorskip("torch", reason="--vs-torch runs PyTorch's step beside corgi's")
    # a child process: the profile wraps the registry's primitives for good
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "benchmarks.cnn_profile", *options], cwd=root, check=False,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, (text, done.stdout)
