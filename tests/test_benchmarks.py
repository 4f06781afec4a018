"""The benchmark driver's bookkeeping (no timing here: records are made up).

How rounds are ordered and merged, and how table (a) turns per-round
records into ratios, decide what the published figures mean, so they are
tested like the library.
"""

from benchmarks import report, run


def test_rotated_moves_every_peer_through_every_slot():
    jobs = run.plan(["a", "b"], quick=True)
    seen = {}
    for r in range(len(run.PEERS)):
        order = run.rotated(jobs, r)
        assert sorted(map(id, order)) == sorted(map(id, jobs))  # the same jobs, reordered
        block = [j.peer for j in order if j.key == "a" and j.group == "float32" and j.threads == 2]
        seen[r] = block[0]
        assert sorted(block) == sorted(run.PEERS)
    assert sorted(seen.values()) == sorted(run.PEERS)  # each peer ran first once
    assert run.rotated(jobs, 0) == jobs


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
    assert set(run.ROUNDED) == {"a", "b"}
    assert run.PINNED_MALLOC == ("a",)
    assert "MALLOC_MMAP_THRESHOLD_" in run.child_env(1, pin_malloc=True)
    assert "MALLOC_MMAP_THRESHOLD_" not in run.child_env(2)
    assert run.child_env(2)["OPENBLAS_NUM_THREADS"] == "2"
