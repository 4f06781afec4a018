"""Turns the driver's records into Markdown tables (pasteable into README.md).

Ratios are time / reference time, so 3.00x means three times slower than the
reference; "check" compares each peer's result values with the numpy floor's,
so a fast but wrong peer cannot go unnoticed.
"""
import os
import platform
from importlib import metadata

PEER_ORDER = ("numpy", "torch", "autograd", "corgi")


def machine_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("numpy", "torch", "autograd", "threadpoolctl"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def num(x):
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def ratio(x, ref):
    return f"{x / ref:.2f}x" if x is not None and ref else "-"


def ok(rec):
    return rec is not None and rec.get("status") == "ok"


def res(rec, key):
    return rec["results"].get(key) if ok(rec) else None


def status_cell(rec):
    return "missing" if rec is None else rec.get("status", "?")


def agree(a, b, rtol):
    """'ok' when the check values match within rtol, '-' when there is nothing to compare."""
    if a is None or b is None:
        return "-"
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    good = all(abs(x - y) <= rtol * max(abs(x), abs(y), 1e-300) for x, y in zip(a, b))
    return "ok" if good and len(a) == len(b) else "MISMATCH"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def failures(recs):
    lines = []
    for r in recs:
        if not ok(r):
            where = f"{r['label']} {r.get('group', '')} threads={r.get('threads_setting')}"
            lines.append(f"- {where}: {r.get('status')}: {r.get('error', '')}")
    return lines


def first(recs, **match):
    for r in recs:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def losses(rec):
    return [res(rec, "first_loss"), res(rec, "last_loss")] if ok(rec) else None


def round_times(rec, key):
    """The per-round values of a result (one value when the row ran once)."""
    if not ok(rec):
        return []
    return [r.get(key) for r in rec.get("rounds", [rec["results"]])]


def table_a(recs):
    rows, notes = [], []
    for dtype in ("float32", "float64"):
        group = [r for r in recs if r["group"] == dtype]
        labels = list(dict.fromkeys(r["label"] for r in group))
        labels += [peer for peer in PEER_ORDER if not any(r["peer"] == peer for r in group)]  # shown as missing
        floor = "numpy in place" if "numpy in place" in labels else "numpy"

        def setting(label, threads):
            return res(first(group, label=label, threads_setting=threads), "ms_per_step")

        def fastest(label):
            return min((t for t in (setting(label, 1), setting(label, 2)) if t is not None), default=None)

        def best_each_round(label):
            per = [round_times(first(group, label=label, threads_setting=k), "ms_per_step") for k in (1, 2)]
            per = [times for times in per if times]
            return [min(pair) for pair in zip(*per)] if per else []

        one, two = setting(floor, 1), setting(floor, 2)
        if one and two and two > 0.9 * one:
            notes.append(f"{dtype}: numpy's 2-thread step was not clearly faster than its 1-thread one "
                         "in any round: the second core was busy, so 2-thread figures are unreliable")
        ref = first(group, label=floor, threads_setting=1)
        numpy_rounds, numpy_fastest = best_each_round(floor), fastest(floor)
        for label in labels:
            t1 = first(group, label=label, threads_setting=1)
            t2 = first(group, label=label, threads_setting=2)
            if not (ok(t1) or ok(t2)):
                rows.append([label, dtype, status_cell(t1), status_cell(t2), "-", "-", "-", "-", "-"])
                continue
            rtol = 1e-4 if dtype == "float32" else 1e-9
            # each round's own ratio (best setting against best setting) shows the spread
            ratios = [t / n for t, n in zip(best_each_round(label), numpy_rounds) if t and n]
            each = " ".join(f"{r:.2f}x" for r in ratios) if len(ratios) > 1 else "-"
            versus_torch = " / ".join(ratio(setting(label, k), setting("torch", k)) for k in (1, 2))
            best = fastest(label)
            rows.append([label, dtype, num(setting(label, 1)), num(setting(label, 2)), num(best),
                         ratio(best, numpy_fastest), each, versus_torch,
                         agree(losses(t1 if ok(t1) else t2), losses(ref), rtol)])
    head = ["peer", "dtype", "1 thread ms", "2 threads ms", "best ms", f"x {floor}",
            f"x {floor} by round", "x torch (1 / 2 threads)", "loss check"]
    return table(head, rows) + "".join(f"\n\n{note}" for note in notes)


def table_b(recs):
    ref, tref = first(recs, label="numpy"), first(recs, label="torch")
    rows = []
    for r in recs:
        if not ok(r):
            rows.append([r["label"], status_cell(r), "", "", "-", "-", "-"])
            continue
        tot = res(r, "total_us_per_op")
        rows.append([r["label"], num(res(r, "fwd_us_per_op")), num(res(r, "bwd_us_per_op")),
                     num(tot), ratio(tot, res(ref, "total_us_per_op")),
                     ratio(tot, res(tref, "total_us_per_op")),
                     agree(res(r, "check"), res(ref, "check"), 1e-9)])
    head = ["peer", "fwd us/op", "bwd us/op", "total us/op", "x numpy", "x torch", "check"]
    return table(head, rows)


def table_c(recs):
    ref, tref = first(recs, label="numpy serial"), first(recs, label="torch")
    rows = []
    for r in recs:
        if not ok(r):
            rows.append([r["label"], status_cell(r), "", "-", "-", "-", "-"])
            continue
        bwd = res(r, "bwd_ms")
        serial = first(recs, peer=r["peer"])  # each peer's first row is its serial one
        speedup = (f"{res(serial, 'bwd_ms') / bwd:.2f}x" if ok(serial) and serial is not r
                   and r.get("threads_setting", 1) == 1 else "-")
        rows.append([r["label"], num(res(r, "fwd_ms")), num(bwd), ratio(bwd, res(ref, "bwd_ms")),
                     ratio(bwd, res(tref, "bwd_ms")), speedup,
                     agree(res(r, "check"), res(ref, "check"), 1e-4)])
    head = ["peer", "fwd ms", "bwd ms", "bwd x numpy serial", "bwd x torch",
            "speed-up vs own serial", "check"]
    return table(head, rows)


def table_d(recs):
    rows = []

    def per_op(r):
        return (res(r, "fwd_s") + res(r, "bwd_s")) / res(r, "n") * 1e6 if ok(r) else None

    ref = first(recs, peer="numpy")
    tref = first(recs, peer="torch")
    for r in recs:
        if not ok(r):
            rows.append([r["label"], status_cell(r), "", "", "", "", "-", "-", "-"])
            continue
        same_n = ok(ref) and res(ref, "n") == res(r, "n")
        rows.append([r["label"], num(res(r, "fwd_s")), num(res(r, "bwd_s")), num(per_op(r)),
                     num(res(r, "peak_bytes") / 2**20), f"{res(r, 'bytes_per_node'):,.0f}",
                     ratio(per_op(r), per_op(ref)), ratio(per_op(r), per_op(tref)),
                     agree(res(r, "check"), res(ref, "check"), 1e-9) if same_n else "-"])
    head = ["peer", "fwd s", "bwd s", "total us/op", "peak MiB", "bytes/node",
            "x numpy (per op)", "x torch (per op)", "check"]
    return table(head, rows)


def table_e(recs):
    """Per network and BLAS thread count: accuracy, time to the target accuracy, ratios to torch."""
    rows, notes = [], []
    for net in ("mlp", "cnn"):
        for threads in (1, 2):
            group = [r for r in recs if r["group"] == net and r.get("threads_setting") == threads]
            if not group:
                continue
            torch_rec = first(group, peer="torch")
            ref = first(group, peer="numpy") or torch_rec
            dtype = ((group[0].get("params") or {}).get("dtype")) or "float64"
            for r in group:
                head = [net, r["label"], threads]
                if not ok(r):
                    rows.append(head + [status_cell(r), "", "", "-", "", "-", "-"])
                    continue
                target, reached = res(r, "target"), res(r, "seconds_to_target")
                accuracies = res(r, "accuracies") or []
                epoch = next((i + 1 for i, a in enumerate(accuracies) if a >= target), None)
                to_target = f"{num(reached)} (epoch {epoch})" if reached is not None else f"not reached ({target})"
                rows.append(head + [
                    f"{res(r, 'final_accuracy'):.4f}", num(res(r, "total_s")), to_target,
                    ratio(reached, res(torch_rec, "seconds_to_target")),
                    ratio(res(r, "total_s"), res(torch_rec, "total_s")),
                    agree(res(r, "check"), res(ref, "check"), 1e-9 if dtype == "float64" else 1e-4)])
            p = group[0]["results"] if ok(group[0]) else {}
            if p and threads == 1:
                notes.append(f"{net}: {p.get('epochs')} epochs, target accuracy {p.get('target')}")
    head = ["net", "peer", "BLAS threads", "held-out accuracy", "train s", "s to target", "x torch (to target)",
            "x torch (train s)", "first steps' losses"]
    out = table(head, rows) + ("\n\n" + "; ".join(notes) if notes else "")
    jobs = [r for r in recs if str(r["group"]).startswith("job")]
    if jobs:
        job_rows = []
        for r in jobs:
            if not ok(r):
                job_rows.append([r["label"], r.get("threads_setting"), status_cell(r), "-", "-"])
                continue
            job_rows.append([r["label"], r.get("threads_setting"), res(r, "epochs"),
                             f"{res(r, 'final_accuracy'):.4f}", num(res(r, "total_s"))])
        out += ("\n\nThe main job as a user runs it (its defaults: float64, the seed's softmax and cross-entropy, "
                "seed 0; seconds of main(), without starting Python):\n\n")
        out += table(["command", "BLAS threads", "epochs", "held-out accuracy", "seconds"], job_rows)
    return out


def table_f(recs):
    """(f): step times side by side per batch, the exchange against the raw allreduce, the goals.

    Separate rows run in separate processes, minutes apart on a machine whose
    speed drifts; so corgi's row also measures, in alternating blocks in the
    same processes, its exchange against the raw allreduce of the same
    buckets and its step against the floor's. The goals use those.
    """
    out = []
    for group in dict.fromkeys(r["group"] for r in recs):
        rows = [r for r in recs if r["group"] == group]

        def step(peer, ranks, threads, rows=rows):
            return res(first(rows, peer=peer, ranks_setting=ranks, threads_setting=threads), "ms_per_step")

        def best_one_rank(peer):
            return min((t for t in (step(peer, 1, 1), step(peer, 1, 2)) if t is not None), default=None)

        raw_row = first(rows, peer="allreduce")
        ref = first(rows, peer="numpy", ranks_setting=2)
        table_rows = []
        for r in rows:
            threads = r["threads_setting"]
            if not ok(r):
                table_rows.append([r["label"], str(threads), status_cell(r)] + ["-"] * 7)
                continue
            if r["peer"] == "allreduce":
                table_rows.append([r["label"], str(threads), "-", "-", "-", "-",
                                   num(res(r, "allreduce_us")), "-", "-",
                                   f"one flat buffer: {num(res(r, 'flat_allreduce_us'))} us"])
                continue
            ranks, ms = r["ranks_setting"], res(r, "ms_per_step")
            two = ranks == 2 and r["peer"] == "corgi"
            scaling = f"{best_one_rank(r['peer']) / ms:.2f}x" if ranks == 2 and best_one_rank(r["peer"]) else "-"
            together = ratio(res(r, "interleaved_ms"), res(r, "interleaved_floor_ms")) if r["peer"] == "corgi" else "-"
            table_rows.append([r["label"], str(threads), num(ms), ratio(ms, step("numpy", ranks, threads)), together,
                               scaling, num(res(r, "exchange_us")) if two else "-",
                               ratio(res(r, "exchange_us"), res(r, "raw_us")) if two else "-",
                               num(res(r, "counts_us")) if two else "-",
                               agree(losses(r), losses(ref), 1e-4)])
        head = ["peer", "BLAS threads per rank", "ms/step", "x numpy (same ranks, threads)",
                "x numpy, alternating in one run", "2 ranks vs best 1 rank", "exchange us",
                "x raw allreduce (same run)", "count exchange us", "loss check"]
        out += [f"**{group}** (global; 2 ranks take half each)", "", table(head, table_rows), ""]
        corgi2 = first(rows, peer="corgi", ranks_setting=2)
        goals = []
        if ok(corgi2) and res(corgi2, "raw_us"):
            goals.append(f"exchange / raw allreduce of the same buckets: {res(corgi2, 'exchange_us') / res(corgi2, 'raw_us'):.2f}x"
                         f" ({num(res(corgi2, 'exchange_us'))} vs {num(res(corgi2, 'raw_us'))} us; goal <= 1.10)")
        if ok(corgi2) and res(corgi2, "interleaved_floor_ms"):
            goals.append(f"corgi 2-rank step / numpy 2-rank step: {res(corgi2, 'interleaved_ms') / res(corgi2, 'interleaved_floor_ms'):.2f}x"
                         f" alternating in one run, {ratio(step('corgi', 2, 1), step('numpy', 2, 1))} from separate rows (goal <= 1.15)")
        if ok(raw_row):
            goals.append(f"raw allreduce row: {num(res(raw_row, 'allreduce_us'))} us for the buckets")
        if goals:
            out += ["; ".join(goals[:2]) + ".", ""]
        medians = res(corgi2, "interleaved_median_ms") if ok(corgi2) else None
        if medians and res(corgi2, "interleaved_after_ms") is not None:
            # the overlap's effect: the same 2-rank step with each bucket sent from the backward pass's
            # ready hooks, with every gradient reported after the pass, and with no exchange at all
            fastest = {"corgi": "interleaved_ms", "after": "interleaved_after_ms", "local": "interleaved_local_ms",
                       "floor": "interleaved_floor_ms"}
            names = {"corgi": "buckets sent during the backward pass", "after": "sent after it",
                     "local": "no exchange (each rank alone)", "floor": "numpy floor"}
            cells = [f"{names[key]} {num(res(corgi2, field))} ({num(medians.get(key))})" for key, field in fastest.items()]
            out += ["2-rank steps alternating in one run, ms, fastest block (median block): " + "; ".join(cells) + ".", ""]
        if ok(corgi2) and res(corgi2, "exchange_loop_us") and res(corgi2, "raw_loop_us"):
            # like with like: the same exchange back to back, the ranks pacing each other as in training
            loop = (f"exchange back to back without barriers: {num(res(corgi2, 'exchange_loop_us'))} us a call on average "
                    f"against the raw allreduce's {num(res(corgi2, 'raw_loop_us'))} "
                    f"({res(corgi2, 'exchange_loop_us') / res(corgi2, 'raw_loop_us'):.2f}x)")
            if res(corgi2, "exchange_loop_median_call_us") and res(corgi2, "raw_loop_median_call_us"):
                loop += (f"; the median call {num(res(corgi2, 'exchange_loop_median_call_us'))} against "
                         f"{num(res(corgi2, 'raw_loop_median_call_us'))} "
                         f"({res(corgi2, 'exchange_loop_median_call_us') / res(corgi2, 'raw_loop_median_call_us'):.2f}x)")
            loop += "."
            out += [loop, ""]
        inside = res(corgi2, "in_step") if ok(corgi2) else None
        if inside:
            # each rank's clock stamps: what the wait for the sums is made of, inside the step
            cells = [f"{who} waits {num(inside[key]['wait_us'])} us for the sums: {num(inside[key]['skew_us'])} the other "
                     f"rank's lateness (skew), {num(inside[key]['after_last_us'])} the exchange once both are in"
                     for who, key in (("corgi", "corgi"), ("the floor", "floor")) if key in inside]
            out += ["Inside the 2-rank step (medians over the steps): " + "; ".join(cells) + ".", ""]
    return "\n".join(out).rstrip()


TITLES = {
    "a": "(a) MLP 784-256-10 training step, batch 128 (ms/step; best of 1 and 2 BLAS threads)",
    "b": "(b) Per-node overhead: chain of x*w, x+b on 1-element float64 (us per op)",
    "c": "(c) Wide graph: 8 x tanh(X @ W_k) summed, float32, 1 BLAS thread unless the row says 2 (ms)",
    "d": "(d) Long chain (same ops as b): time and peak RSS over baseline",
    "e": "(e) Training the MNIST networks to an accuracy (float64, batch 32; training seconds, median of rounds)",
    "f": "(f) Data-parallel MLP 784-256-10 step over MPI, float32 (ms/step; exchange in us)",
}
RENDER = {"a": table_a, "b": table_b, "c": table_c, "d": table_d, "e": table_e, "f": table_f}


def rounds_note(recs):
    counts = {len(r.get("rounds", [None])) for r in recs if ok(r)}
    if counts and max(counts) > 1:
        if recs[0].get("key") == "e":
            return f"\nEach figure: the median of {max(counts)} interleaved rounds (a fresh process each)."
        return (f"\nEach row: the fastest of {max(counts)} interleaved rounds (a fresh process each, "
                "itself a median over many repeats).")
    return None


def render(results, machine, quick=False):
    v = machine["versions"]
    out = [(f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, Python {machine['python']}, "
            f"numpy {v['numpy']}, torch {v['torch']}, autograd {v['autograd']}"
            + (" -- QUICK run (small sizes)" if quick else "")),
           (f"Load average before/after: {machine['load_before'][0]:.2f} / "
            f"{machine['load_after'][0]:.2f}; wall time {machine['wall_s']} s")]
    if machine["load_before"][0] > 0.5 * (machine["cpus"] or 1):
        # Other processes competed for the cores: 2-thread rows suffer most. (Only the load
        # before the run counts: the run's own 2-thread children raise the load after it.)
        out.append("WARNING: the machine was busy during this run; timings are noisy.")
    for key, render in RENDER.items():
        recs = [r for r in results if r["key"] == key]
        if not recs:
            continue
        out += ["", f"### {TITLES[key]}", "", render(recs)]
        note = rounds_note(recs)
        if note:
            out.append(note)
        if key == "c":
            p = recs[0].get("params") or {}
            if p:
                out.append(f"\nX {p['rows']}x{p['cols']}, W_k {p['cols']}x{p['cols']}, "
                           f"{p['branches']} branches")
        if key == "d":
            meth = next((res(r, "mem_method") for r in recs if ok(r)), None)
            if meth:
                out.append(f"\nMemory: {meth}, measured in a fresh process per row.")
        fails = failures(recs)
        if fails:
            out += [""] + fails
    return "\n".join(out)
