"""Held-out accuracy against training time, per peer, from a run of workload (e).

    python -m benchmarks.run --only e --json results-e.json
    python -m benchmarks.plot_training results-e.json      # writes benchmarks/training_curves.png

One panel per network, one line per peer (1 BLAS thread rows, or --threads):
each point is an epoch's end, at the training seconds spent so far (the
median round's clock, as the table reports). A dotted line marks the target
accuracy the table's "s to target" column measures.
"""
import argparse
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_curves.png")
COLORS = {"numpy": "tab:blue", "torch": "tab:orange", "corgi": "tab:green", "corgi, seed's cost": "tab:red"}


def curves(results, threads):
    """{net: [(label, seconds, accuracies, target)]} from the driver's records of (e)."""
    found = {}
    for rec in results:
        if rec.get("key") != "e" or rec.get("status") != "ok" or rec.get("threads_setting") != threads:
            continue
        if str(rec.get("group", "")).startswith("job"):  # the main job's rows have no per-epoch curve
            continue
        r = rec["results"]
        seconds = r["seconds"]
        rounds = [round_["total_s"] for round_ in rec.get("rounds", [])]
        if rounds:  # scale the first round's clock to the median total the table shows
            seconds = [s * r["total_s"] / seconds[-1] for s in seconds]
        found.setdefault(r["net"], []).append((rec["label"], seconds, r["accuracies"], r["target"]))
    return found


def draw(found, path, threads):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(found), figsize=(5.5 * len(found), 4), squeeze=False)
    for ax, (net, lines) in zip(axes[0], sorted(found.items(), key=lambda item: item[0] != "mlp")):
        for label, seconds, accuracies, target in lines:
            ax.plot(seconds, accuracies, "o-", ms=3, label=label, color=COLORS.get(label))
        ax.axhline(lines[0][3], ls=":", color="grey", label=f"target {lines[0][3]}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        low = min(min(a) for _, _, a, _ in lines)
        ax.set_ylim(max(low - 0.01, 0.85), 1.0)
        ax.set_xlabel("training seconds (log scale)")
        ax.set_ylabel("held-out accuracy (2,000 digits)")
        ax.set_title(f"MNIST {net}, float64, {threads} BLAS thread{'s' if threads > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="the --json file of a run that included workload e")
    ap.add_argument("--threads", type=int, default=1, help="which BLAS thread rows to draw (default 1)")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    with open(args.results) as f:
        found = curves(json.load(f)["results"], args.threads)
    if not found:
        raise SystemExit(f"{args.results} has no successful rows of workload e at {args.threads} thread(s)")
    draw(found, args.out, args.threads)


if __name__ == "__main__":
    main()
