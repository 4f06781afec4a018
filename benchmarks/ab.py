"""(a) interleaved in one process: every peer's MLP step, block after block, side by side.

    python -m benchmarks.ab                          # float32 and float64, 1 and 2 BLAS threads
    python -m benchmarks.ab --threads 1 --dtypes float64 --blocks 8 --steps 60
    python -m benchmarks.ab --json ab.json
    python -m benchmarks.ab --before main            # and corgi as it is on main, in the same processes
    python -m benchmarks.ab --threads 1 --clock thread   # CPU time of the stepping thread (a busy machine)

This machine's speed drifts by tens of percent between processes and over
minutes, so a ratio of two figures measured in different processes says as
much about the moment as about the peers. Here one child process per BLAS
thread count (thread pools are sized when the libraries load) builds every
peer's step on the same inputs and runs them in blocks: a block of ``steps``
steps of each peer in turn, the order rotated from block to block, for
``blocks`` blocks. A peer's figure is the median of its block means, and its
ratio to the floor is the median of the per-block ratios (each block's ratio
compares moments a few hundred milliseconds apart). The issue's own figures
were medians of 8 blocks of 60 steps.

The peers: the numpy floor updating its parameters in place (``numpy in
place``: the real floor, what a hand-written loop does) and making new
arrays (``numpy new``: what an immutable library must at least do); corgi's
Model path as the seed writes it (``corgi seed``: Dense + ReLU, Dense +
softmax, ``make_cross_entropy``, ``GradientDescent``) and with the fused
cost (``corgi fused``: Dense without activation and
``make_softmax_cross_entropy``); PyTorch eager (``torch``, if installed; in
place under ``no_grad``); with ``--before REF``, corgi's two Model paths as
they are at git ref REF (``before seed``, ``before fused``), imported beside
the working tree's corgi in the same process: an A/B of two versions, block
by block. Every peer starts from the same weights, and the first losses are
checked against the floor's.

``--clock thread`` times each block by the CPU time of the thread that runs
the steps (``time.thread_time``) instead of the wall clock. With one BLAS
thread every peer's whole step runs on that thread, so the figure leaves
out the time the thread spent waiting for a core: on a machine busy with
other work it stays close to the quiet wall-clock figure (the floor's
float32 step read 1.46 ms of CPU at load 6, against 1.33 ms of wall time on
a quiet machine), where wall-clock ratios scatter from 0.2x to 1.8x. It
still counts what a busy neighbour does to the caches. Only for one BLAS
thread: another thread's work would not be counted.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import run

PEERS = ("numpy in place", "numpy new", "corgi seed", "corgi fused", "torch", "before seed", "before fused")
REFERENCE = "numpy in place"


def load_before(ref: str) -> object:
    """corgi as it is at git ref ``ref``, imported beside this one as the package ``corgi_before``
    (corgi imports itself only relatively, so a copy under another name is a second, separate corgi)."""
    import importlib
    import tarfile
    import tempfile

    where = tempfile.mkdtemp(prefix="corgi-before-")
    archive = subprocess.run(["git", "archive", ref, "corgi"], cwd=run.ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    os.rename(os.path.join(where, "corgi"), os.path.join(where, "corgi_before"))
    sys.path.insert(0, where)
    return importlib.import_module("corgi_before")


def make_steps(dtype_name: str, batch: int, want_torch: bool, before: object = None) -> dict:
    """Every peer's step on the same data, keyed by peer name (torch left out when it is missing)."""
    import numpy as np

    from benchmarks.workloads import common, corgi_peer, floor

    dtype = np.dtype(dtype_name)
    x, labels, onehot, params = common.mlp_data(dtype, batch)
    import corgi

    makers = {"numpy in place": floor.make_mlp_step_inplace, "numpy new": floor.make_mlp_step,
              "corgi seed": corgi_peer.make_model_step(corgi, dtype.type, "seed"),
              "corgi fused": corgi_peer.make_model_step(corgi, dtype.type, "fused")}
    if before is not None:
        makers["before seed"] = corgi_peer.make_model_step(before, dtype.type, "seed")
        makers["before fused"] = corgi_peer.make_model_step(before, dtype.type, "fused")
    if want_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            from benchmarks.workloads import torch_peer

            makers["torch"] = torch_peer.make_mlp_step
    return {name: make(x, labels, onehot, [p.copy() for p in params], common.MLP_LR) for name, make in makers.items()}


def child(args: argparse.Namespace) -> None:
    """Run in the child: time every peer in interleaved blocks, print one JSON line."""
    if "torch" in args.peers:
        try:
            import torch

            torch.set_num_threads(args.threads)
            torch.set_num_interop_threads(1)
        except ImportError:
            pass
    out = {"threads": args.threads, "clock": args.clock, "load_before": os.getloadavg(), "dtypes": {}}
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    before = load_before(args.before) if args.before else None
    for dtype in args.dtypes:
        steps = make_steps(dtype, args.batch, "torch" in args.peers, before)
        steps = {name: step for name, step in steps.items() if name in args.peers}
        first = {name: step() for name, step in steps.items()}
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        names = list(steps)
        blocks: dict[str, list[float]] = {name: [] for name in names}
        gc.collect()
        for b in range(args.blocks):
            k = b % len(names)
            for name in names[k:] + names[:k]:
                step = steps[name]
                t0 = clock()
                for _ in range(args.steps):
                    step()
                blocks[name].append((clock() - t0) / args.steps * 1e3)
        out["dtypes"][dtype] = {"block_ms": blocks, "first_loss": first}
    out["load_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


def summarize(records: list[dict], reference: str = REFERENCE) -> list[dict]:
    """One row per (dtype, threads, peer): median block ms, median per-block ratio to ``reference``."""
    rows = []
    for record in records:
        for dtype, data in record["dtypes"].items():
            blocks = data["block_ms"]
            ref = blocks.get(reference)
            ref_loss = data["first_loss"].get(reference)
            for name, times in blocks.items():
                ratios = [t / r for t, r in zip(times, ref)] if ref else []
                loss = data["first_loss"][name]
                rows.append({"dtype": dtype, "threads": record["threads"], "peer": name,
                             "ms": statistics.median(times), "min_ms": min(times),
                             "ratio": statistics.median(ratios) if ratios else None,
                             "ratio_range": (min(ratios), max(ratios)) if ratios else None,
                             "loss_ok": ref_loss is None or abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)})
            torch_times = blocks.get("torch")
            if torch_times:
                for row in rows[-len(blocks):]:
                    row["x_torch"] = statistics.median(t / r for t, r in zip(blocks[row["peer"]], torch_times))
    return rows


def render(rows: list[dict], args: argparse.Namespace, loads: list) -> str:
    lines = [(f"(a) interleaved in one process: median of {args.blocks} blocks of {args.steps} steps, "
              f"batch {args.batch}; ratios are medians of per-block ratios"
              + ("; times are the stepping thread's CPU time" if args.clock == "thread" else "")),
             "",
             f"| dtype | BLAS threads | peer | ms/step | x {REFERENCE} (range) | x torch | first loss |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f})"
        xt = f"{r['x_torch']:.2f}x" if "x_torch" in r else ""
        lines.append(f"| {r['dtype']} | {r['threads']} | {r['peer']} | {r['ms']:.3f} | {ratio} | {xt} | "
                     f"{'ok' if r['loss_ok'] else 'MISMATCH'} |")
    lines.append("")
    lines.append("load average (1, 5, 15 min) before and after each child: " +
                 "; ".join(f"{b[0]:.2f} {b[1]:.2f} {b[2]:.2f} -> {a[0]:.2f} {a[1]:.2f} {a[2]:.2f}" for b, a in loads))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="BLAS thread counts, one child process each")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="wall clock, or the stepping thread's CPU time (one BLAS thread only)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--before", metavar="GIT_REF",
                    help="also time corgi as it is at this git ref (peers 'before seed', 'before fused'), "
                         "imported beside the working tree's in the same process: an A/B of two versions")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.peers = [p for p in args.peers.split(",") if p]
    if not args.before:
        args.peers = [p for p in args.peers if not p.startswith("before")]
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {unknown}; choose from {','.join(PEERS)}")
    if args.clock == "thread" and args.threads != "1":
        ap.error("--clock thread needs --threads 1: other threads' work would not be counted")
    if args.child:
        args.threads = int(args.threads)
        child(args)
        return
    records = []
    for threads in [int(t) for t in args.threads.split(",") if t]:
        cmd = [sys.executable, "-m", "benchmarks.ab", "--child", "--threads", str(threads),
               "--dtypes", ",".join(args.dtypes), "--peers", ",".join(args.peers), "--blocks", str(args.blocks),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
               "--clock", args.clock]
        if args.before:
            cmd += ["--before", args.before]
        print(f"threads={threads} ...", end=" ", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, cwd=run.ROOT, env=run.child_env(threads, pin_malloc=True), capture_output=True,
                              text=True, timeout=run.CHILD_TIMEOUT_S)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"child (threads={threads}) failed:\n{proc.stderr}")
        records.append(json.loads(lines[-1]))
        print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    rows = summarize(records)
    print(render(rows, args, [(r["load_before"], r["load_after"]) for r in records]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": records, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
