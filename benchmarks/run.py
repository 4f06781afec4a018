"""Benchmark driver: corgi against a numpy floor, PyTorch and HIPS autograd.

    python -m benchmarks.run                 # (a) to (d) (about 10 minutes)
    python -m benchmarks.run --only e        # training MNIST to an accuracy (about 17 minutes)
    python -m benchmarks.run --quick         # smoke run, small sizes
    python -m benchmarks.run --only a,c --json results.json
    python -m benchmarks.run --only a --rounds 5      # more rounds of the short workloads
    python -m benchmarks.run --only f                 # data-parallel steps over MPI (mpiexec)

Every (workload, peer, setting) runs in its own child process
(`python -m benchmarks.workloads.<peer> <workload> ...`), so thread settings
are fixed before any library loads, one peer's memory or imports cannot
affect another's, and a broken peer becomes a row saying so.

The data-parallel workload (f) runs each row as `mpiexec -n <ranks> python -m
benchmarks.workloads.dataparallel <peer> ...`; rank 0 prints the JSON line.

The short workloads, (a), (b) and (f), run in rounds: every row once per round,
round after round, and each row reports its fastest round. This machine's
speed drifts by tens of percent over minutes; rows measured once, one after
the other, would compare moments, not peers. The training runs of (e) also
run in rounds and report each figure's median over them, the figure the
docs quote for a training time.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from benchmarks import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {"numpy": "floor", "torch": "torch_peer", "autograd": "autograd_peer",
           "corgi": "corgi_peer"}
PEERS = tuple(MODULES)
WORKLOADS = {"a": "mlp", "b": "chain", "c": "wide", "d": "long", "e": "train", "f": "dataparallel"}
ROUNDED = ("a", "b", "e", "f")  # workloads run in interleaved rounds
MEDIAN_OF_ROUNDS = ("e",)  # reported as the median of the rounds (the others: the fastest round)
MPI_WORKLOADS = ("f",)  # run under mpiexec, malloc pinned as for (a): its steps move the same blocks
# (e): the peers that train each network, with their options; the floor trains the mlp only
TRAINING = {"mlp": [("numpy", "numpy", []), ("torch", "torch", []), ("corgi", "corgi", ["--loss", "fused"]),
                    ("corgi", "corgi, seed's cost", ["--loss", "seed"])],
            "cnn": [("torch", "torch", []), ("corgi", "corgi", ["--loss", "fused"])]}
CHILD_TIMEOUT_S = 900
# glibc malloc, pinned alike for every peer of (a). By default it serves big blocks
# (a 784x256 float64 weight is 1.6 MB) with mmap, then moves that threshold
# and trims the heap by heuristics that depend on each process's history: the
# same numpy step then took 1.4 ms in one process and 1.7-1.9 ms in others,
# which paid about 250 page faults a step. Fixed thresholds keep freed blocks
# for reuse, so the table compares the libraries rather than the allocator's
# luck. Only (a) moves blocks that big: the chains of (b) and (d) run with the
# defaults (pinned, corgi's 1,000,000-op forward went from 4.6 to 5.4 s).
PINNED_MALLOC = ("a",)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


@dataclass
class Job:
    key: str            # workload letter
    peer: str
    label: str          # row name in the table
    options: list = field(default_factory=list)
    threads: int = 1
    group: str = ""     # rows compared with each other (e.g. the dtype)
    ranks: int = 0      # MPI ranks (mpiexec -n), 0 for a plain child process


def sizes(quick):
    """Per-workload options; --quick shrinks sizes and repeats, not the shape
    of the experiment."""
    if quick:
        return {"a": ["--warmup", "2", "--repeats", "5"],
                "e": {"mlp": ["--epochs", "2", "--steps", "20"], "cnn": ["--epochs", "1", "--steps", "10"]},
                "b": ["--n", "1000", "--warmup", "1", "--repeats", "3"],
                "c": ["--rows", "128", "--cols", "256", "--warmup", "1", "--repeats", "2"],
                "d": 10_000, "d_corgi": 100_000,
                "f": ["--warmup", "2", "--repeats", "10", "--exchanges", "20"], "f_batches": (128,)}
    return {"a": ["--warmup", "10", "--repeats", "200"],
            "e": {"mlp": [], "cnn": []},
            "b": ["--n", "10000", "--warmup", "1", "--repeats", "5"],
            "c": ["--warmup", "1", "--repeats", "5"],
            "d": 100_000, "d_corgi": 1_000_000,
            "f": ["--warmup", "10", "--repeats", "200", "--exchanges", "300"], "f_batches": (128, 1024)}


def plan(only, quick):
    s = sizes(quick)
    jobs = []
    if "a" in only:
        # peers side by side within each setting: rows compared with each other run
        # seconds apart, not minutes
        for dtype in ("float32", "float64"):
            for threads in (1, 2):
                for peer in PEERS:
                    jobs.append(Job("a", peer, peer, s["a"] + ["--dtype", dtype],
                                    threads, dtype))
    if "b" in only:
        for peer in PEERS:
            if peer == "corgi":
                for w in (0, 2):
                    jobs.append(Job("b", peer, f"corgi workers={w}", s["b"] + ["--workers", str(w)]))
            else:
                jobs.append(Job("b", peer, peer, s["b"]))
    if "c" in only:
        jobs.append(Job("c", "numpy", "numpy serial", s["c"]))
        jobs.append(Job("c", "numpy", "numpy pool=2", s["c"] + ["--pool", "2"]))
        jobs.append(Job("c", "torch", "torch", s["c"]))
        jobs.append(Job("c", "autograd", "autograd", s["c"]))
        for w in (0, 2):
            jobs.append(Job("c", "corgi", f"corgi workers={w}", s["c"] + ["--workers", str(w)]))
    if "d" in only:
        for peer in PEERS:
            n = s["d"]
            extra = ["--workers", "2"] if peer == "corgi" else []
            jobs.append(Job("d", peer, f"{peer} n={n:,}", ["--n", str(n), "--repeats", "1"] + extra))
        n = s["d_corgi"]
        jobs.append(Job("d", "corgi", f"corgi n={n:,}",
                        ["--n", str(n), "--repeats", "1", "--workers", "2"]))
    if "f" in only:
        # float32, global batch; the floor and corgi side by side at each (ranks, BLAS threads)
        for batch in s["f_batches"]:
            options = s["f"] + ["--batch", str(batch)]
            for ranks, threads in ((1, 1), (1, 2), (2, 1)):
                for peer in ("numpy", "corgi"):
                    jobs.append(Job("f", peer, f"{peer} {ranks} rank{'s' * (ranks > 1)}", options, threads,
                                    f"batch {batch}", ranks))
            jobs.append(Job("f", "allreduce", "allreduce 2 ranks", options, 1, f"batch {batch}", 2))
    if "e" in only:
        # each network's rows side by side for each BLAS thread count, float64 for every peer: there the
        # peers' runs agree to the last digits, epoch after epoch, so every peer reaches the target at
        # the same epoch (in float32, rounding differences grow from step ~100 on and each peer follows
        # its own trajectory, and "time to the accuracy" would compare trajectories, not libraries)
        for net, peers in TRAINING.items():
            for threads in (1, 2):
                for peer, label, options in peers:
                    jobs.append(Job("e", peer, label, s["e"][net] + options + ["--net", net, "--dtype", "float64"],
                                    threads, net))
        # and the main job itself, as a user runs it (its defaults: float64, the seed's cost)
        for net in TRAINING:
            for threads in (1, 2):
                jobs.append(Job("e", "corgi", f"python -m corgi.train --model {net}",
                                s["e"][net] + ["--job", "--net", net, "--dtype", "float64"], threads, f"job {net}"))
    return jobs


def child_env(threads, pin_malloc=False):
    """BLAS pools read these once, when the library loads: they must be set
    before the child starts (threadpoolctl in the child enforces them again)."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if pin_malloc:
        env.update(MALLOC_ENV)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def find_mpiexec():
    """mpiexec beside the interpreter (where the mpich wheel puts it) or on PATH."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("mpiexec", path=path)


def run_child(peer, workload, options, threads=1, timeout=CHILD_TIMEOUT_S, pin_malloc=False, ranks=0):
    """Run one measurement in a fresh process (``ranks`` of them under mpiexec); always returns a record."""
    cmd = [sys.executable, "-m", f"benchmarks.workloads.{MODULES.get(peer, peer)}", workload,
           "--threads", str(threads), *options]
    if ranks:
        mpiexec = find_mpiexec()
        if mpiexec is None:
            return {"peer": peer, "workload": workload, "status": "missing",
                    "error": "no mpiexec (pip install mpi4py mpich)"}
        cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", f"benchmarks.workloads.{workload}", peer,
               "--threads", str(threads), *options]
    record = {"peer": peer, "workload": workload, "cmd": " ".join(cmd[1:])}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(threads, pin_malloc), capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        record.update(status="timeout", error=f"no result within {timeout} s")
        return record
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        record.update(status="error", error=err)
        return record
    record.update(json.loads(lines[-1]))
    return record


def rotated(jobs, r):
    """``jobs`` with each run of rows that are compared with each other (same
    workload, group and thread count) rotated by ``r`` places: across rounds
    every peer takes every slot, so a disturbance that tends to come a few
    seconds into a run of rows does not always fall on the same peer."""
    out, block = [], []
    for job in jobs + [None]:
        if block and (job is None or (job.key, job.group, job.threads)
                      != (block[0].key, block[0].group, block[0].threads)):
            k = r % len(block)
            out += block[k:] + block[:k]
            block = []
        if job is not None:
            block.append(job)
    return out


def merge_rounds(records, pick=min):
    """One record from a row's rounds: each numeric result is the smallest over
    the rounds, or ``pick`` of them (the per-round values are kept in
    ``rounds``; a figure some round lacks is left out, None if every round
    lacks it); a row with a failed round reports that failure.

    The smallest, not the median: what slows a round down here is the host
    (another tenant on the second core, for seconds to minutes at a time),
    which only ever adds time, so the fastest round is the one least
    disturbed. Each round's value is itself a median over many repeats."""
    failed = [r for r in records if r.get("status") != "ok"]
    if failed or len(records) == 1:
        return dict(failed[0] if failed else records[0])
    merged = dict(records[0])
    results = dict(merged["results"])
    for name, value in results.items():
        numbers = [r["results"].get(name) for r in records]
        numbers = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers or value is None:
            results[name] = pick(numbers) if numbers else None
    merged["results"] = results
    merged["rounds"] = [r["results"] for r in records]
    return merged


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    ap.add_argument("--only", default="a,b,c,d,e,f", help="workloads to run, e.g. a,c")
    ap.add_argument("--json", metavar="PATH", help="save the raw records here")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of the short workloads (a, b, f) and of (e); default 3")
    args = ap.parse_args(argv)
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in only if k not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {','.join(WORKLOADS)}")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")

    machine = report.machine_info()
    machine["load_before"] = os.getloadavg()
    jobs = plan(only, args.quick)
    rounds = 1 if args.quick else args.rounds
    schedule = [(job, r) for r in range(rounds) for job in rotated(jobs, r) if job.key in ROUNDED]
    schedule += [(job, 0) for job in jobs if job.key not in ROUNDED]
    runs = {id(job): [] for job in jobs}
    t_start = time.perf_counter()
    for i, (job, r) in enumerate(schedule, 1):
        print(f"[{i}/{len(schedule)}] {job.key} {job.label} {job.group} threads={job.threads}"
              f"{f' ranks={job.ranks}' if job.ranks else ''}"
              f"{f' round {r + 1}' if job.key in ROUNDED and rounds > 1 else ''} ...",
              end=" ", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rec = run_child(job.peer, WORKLOADS[job.key], job.options, job.threads,
                        pin_malloc=job.key in PINNED_MALLOC or job.key in MPI_WORKLOADS, ranks=job.ranks)
        print(f"{rec['status']} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        runs[id(job)].append(rec)
    results = []
    for job in jobs:
        rec = merge_rounds(runs[id(job)], statistics.median if job.key in MEDIAN_OF_ROUNDS else min)
        rec.update(key=job.key, label=job.label, group=job.group, threads_setting=job.threads,
                   ranks_setting=job.ranks)
        results.append(rec)
    machine["load_after"] = os.getloadavg()
    machine["wall_s"] = round(time.perf_counter() - t_start, 1)

    print(report.render(results, machine, quick=args.quick))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "quick": args.quick, "results": results}, f, indent=1)
        print(f"raw results: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
