"""Time per op against graph size for the chain of workload (b)/(d).

    python -m benchmarks.plot            # n = 10^3 .. 10^6, writes benchmarks/chain_scaling.png
    python -m benchmarks.plot --quick    # n = 10^3 .. 10^5

A flat corgi line means the engine's cost per node does not grow with the
graph (iterative counting and traversal, memory linear in the graph). numpy
floor and torch totals are drawn for reference. Without matplotlib the
numbers are still measured and printed; only the picture is skipped.
"""
import argparse
import os
import sys

from benchmarks.run import run_child

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chain_scaling.png")
PEERS = {"corgi": ["--workers", "2"], "numpy": [], "torch": []}


def measure(sizes):
    data = {}  # peer -> list of (n, fwd us/op, bwd us/op)
    for peer, extra in PEERS.items():
        for n in sizes:
            # Small graphs get a few repeats so one scheduler hiccup does not dominate.
            repeats = max(1, min(5, 100_000 // n))
            rec = run_child(peer, "long", ["--n", str(n), "--repeats", str(repeats), *extra])
            if rec.get("status") != "ok":
                print(f"{peer} n={n}: {rec.get('status')}: {rec.get('error')}", file=sys.stderr)
                continue
            r = rec["results"]
            data.setdefault(peer, []).append((n, r["fwd_s"] / n * 1e6, r["bwd_s"] / n * 1e6))
            print(f"{peer:6s} n={n:>9,}  fwd {r['fwd_s'] / n * 1e6:7.2f} us/op  "
                  f"bwd {r['bwd_s'] / n * 1e6:7.2f} us/op", flush=True)
    return data


def draw(data, path):
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib); no plot written.")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for peer, rows in data.items():
        ns = [r[0] for r in rows]
        if peer == "corgi":
            ax.plot(ns, [r[1] for r in rows], "o-", label="corgi forward")
            ax.plot(ns, [r[2] for r in rows], "s-", label="corgi backward")
            ax.plot(ns, [r[1] + r[2] for r in rows], "^-", lw=2, label="corgi total")
        else:
            ax.plot(ns, [r[1] + r[2] for r in rows], "--", label=f"{peer} total")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ops in the chain (graph nodes)")
    ax.set_ylabel("microseconds per op")
    ax.set_title("Chain x*w, x+b (1-element float64): cost per node vs graph size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="stop at 10^5 nodes")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    top = 5 if args.quick else 6
    draw(measure([10**k for k in range(3, top + 1)]), args.out)


if __name__ == "__main__":
    main()
