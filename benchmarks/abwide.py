"""(c) interleaved in one process: the wide graph at corgi's defaults against both numpy options, block by block.

    python -m benchmarks.abwide                      # 8 blocks of 3 repeats
    python -m benchmarks.abwide --before main        # and corgi as it is on main, in the same process

Issue 14's target for (c) compares corgi at its default settings (two
engine workers, all BLAS threads) with the better of two numpy options:
serial with all BLAS threads, and a two-thread pool over the branches with
one BLAS thread each. Run in separate processes, these figures move by tens
of percent with the machine's load (the second core comes and goes). Here
one process holds every peer and sets OpenBLAS's thread count itself
before each one (``openblas_set_num_threads``; corgi's engine reads the
count in each pass, at its first hand-over to the pool, as it would after a user's own call), and
runs them in blocks, the order rotated from block to block. A peer's
figure is the median of its block medians; its ratio is the median of the
per-block ratios to the better numpy option of that block.

Peers: ``numpy serial`` (all BLAS threads), ``numpy pool`` (a two-thread
pool, one BLAS thread), ``corgi`` (defaults: two workers, all BLAS
threads) and, with ``--before REF``, ``before`` (corgi at git ref REF).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import ab, run

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")


def blas_setter():
    """OpenBLAS's ``set_num_threads`` of the library numpy loaded, or None."""
    import numpy  # noqa: F401 - loads OpenBLAS

    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    for path in paths:
        library = ctypes.CDLL(path)
        for symbol in _SETTERS:
            setter = getattr(library, symbol, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                return setter
    return None


def child(args: argparse.Namespace) -> None:
    import corgi
    from benchmarks.workloads import common, corgi_peer, floor

    load_before = os.getloadavg()
    setter = blas_setter()
    if setter is None:
        raise SystemExit("abwide: OpenBLAS's set_num_threads not found")
    x, ws = common.wide_data(args.rows, args.cols, args.branches)
    pool = ThreadPoolExecutor(2)
    peers = {"numpy serial": (args.threads, floor.wide_fns(None)),
             "numpy pool": (1, floor.wide_fns(pool)),
             "corgi": (args.threads, corgi_peer.wide_fns(corgi))}
    if args.before:
        peers["before"] = (args.threads, corgi_peer.wide_fns(ab.load_before(args.before)))
    checks = {}
    for name, (threads, (build, backward)) in peers.items():
        setter(threads)
        checks[name] = backward(build(x, ws))
    names = list(peers)
    forward: dict[str, list[float]] = {name: [] for name in names}
    total: dict[str, list[float]] = {name: [] for name in names}
    for b in range(args.blocks):
        k = b % len(names)
        for name in names[k:] + names[:k]:
            threads, (build, backward) = peers[name]
            setter(threads)
            fw, tot = [], []
            for _ in range(args.repeats):
                gc.collect()
                t0 = time.perf_counter()
                state = build(x, ws)
                t1 = time.perf_counter()
                backward(state)
                t2 = time.perf_counter()
                del state
                fw.append(t1 - t0)
                tot.append(t2 - t0)
            forward[name].append(statistics.median(fw) * 1e3)
            total[name].append(statistics.median(tot) * 1e3)
    out = {"threads": args.threads, "load_before": load_before, "forward_ms": forward, "total_ms": total,
           "checks": checks, "check_ok": all(abs(v - checks["numpy serial"]) <= 1e-3 * abs(checks["numpy serial"])
                                             for v in checks.values())}
    out["load_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


def render(record: dict) -> str:
    total, forward = record["total_ms"], record["forward_ms"]
    best = [min(s, p) for s, p in zip(total["numpy serial"], total["numpy pool"])]
    lines = [(f"(c) interleaved in one process, {len(best)} blocks; BLAS threads {record['threads']} "
              "(numpy pool: 1); ratio = median of per-block ratios to the better numpy option"),
             "", "| peer | fwd ms | fwd + bwd ms | x better numpy (range) |", "|---|---|---|---|"]
    for name in total:
        ratios = [t / r for t, r in zip(total[name], best)]
        lines.append(f"| {name} | {statistics.median(forward[name]):.1f} | {statistics.median(total[name]):.1f} | "
                     f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
    lines.append("")
    lines.append(f"check values {'agree' if record['check_ok'] else 'DIFFER'}: {record['checks']}")
    b, a = record["load_before"], record["load_after"]
    lines.append(f"load average before and after: {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} -> {a[0]:.2f} {a[1]:.2f} {a[2]:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads for the serial numpy and corgi peers")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--branches", type=int, default=8)
    ap.add_argument("--before", metavar="GIT_REF")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    cmd = [sys.executable, "-m", "benchmarks.abwide", "--child", "--threads", str(args.threads),
           "--blocks", str(args.blocks), "--repeats", str(args.repeats), "--rows", str(args.rows),
           "--cols", str(args.cols), "--branches", str(args.branches)]
    if args.before:
        cmd += ["--before", args.before]
    proc = subprocess.run(cmd, check=False, cwd=run.ROOT, env=run.child_env(args.threads), capture_output=True,
                          text=True, timeout=run.CHILD_TIMEOUT_S)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"abwide: the child failed:\n{proc.stderr}")
    record = json.loads(lines[-1])
    print(render(record))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
