"""python -m benchmarks: autograd-cli side by side with PyTorch, JAX and HIPS autograd.

Each workload's systems are timed interleaved in one process run (rep 1 of every system, then
rep 2, ...) after one warm-up call each; medians and min-max of --reps (>= 7) repetitions are
reported with each system's time relative to ours, then the targets of the benchmark issue.

    python -m benchmarks                     # everything available
    python -m benchmarks -w small_ops,mlp -s ours,torch --reps 9
    python -m benchmarks --json > figures.json
"""
import argparse
import gc
import json
import platform
import statistics
import sys
import time

from . import workloads as W


def measure(fns, reps, warmup=True):
    times = {k: [] for k in fns}
    if warmup:
        for fn in fns.values():
            fn()
    # Move everything alive now (torch's, JAX's and numpy's module objects, the workloads'
    # inputs) out of the cyclic collector's sight, as if each system ran in its own process:
    # otherwise every full collection during our graph building walks JAX's and torch's
    # objects too, a cost no user of one system pays. torch and JAX keep their graphs in
    # C++ and are unaffected either way.
    gc.collect()
    gc.freeze()
    for _ in range(reps):
        for k, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    gc.unfreeze()
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "reps": len(v)}
            for k, v in times.items()}


def _label_system(label):
    return label.split()[0].rstrip(":")


def run(workloads, systems, reps, quick):
    size = W.QUICK if quick else W.FULL
    results = {}
    for name in workloads:
        builder, what = W.WORKLOADS[name]
        fns = builder(size, systems)
        fns = {k: v for k, v in fns.items() if _label_system(k) in systems or k.startswith("floor")}
        slow = name in ("deep_chain_1m", "check_mlp")    # minutes per run: one run each, side by side
        n = 1 if slow else reps
        res = measure(fns, n, warmup=not quick and not slow)
        ours = next((v["median"] for k, v in res.items() if k.startswith("ours")), None)
        for v in res.values():
            v["vs_ours"] = v["median"] / ours if ours else None
        results[name] = {"what": what, "systems": res}
        if name in ("small_ops", "deep_chain"):
            ops = size["small_steps"] * 3 + 1 if name == "small_ops" else size["chain"] * 2
            for v in res.values():
                v["per_op_us"] = v["median"] / ops * 1e6
    return results


def targets(results):
    """The benchmark issue's targets as (description, measured, met)."""
    out = []

    def get(w, label):
        return results.get(w, {}).get("systems", {}).get(label, {}).get("median")

    floor = get("startup", "floor: python -c 'import numpy, typer'")
    for label, desc in (("ours: autograd grad (seed example)", "start-up, seed example"),
                        ("ours: autograd --help", "start-up, --help")):
        v = get("startup", label)
        if floor and v:
            out.append((f"{desc} <= 1.3x python -c 'import numpy, typer'", f"{v / floor:.2f}x", v / floor <= 1.3))
    for w in ("small_ops", "deep_chain"):
        o = get(w, "ours")
        for other, limit, word in (("torch", 1.0, "PyTorch eager"), ("hips", 1 / 3, "HIPS autograd / 3")):
            t = get(w, other)
            if o and t:
                out.append((f"{w}: ours <= {word}", f"{o / t:.2f}x {other}", o / t <= limit))
    for w in ("large_elementwise", "mlp"):
        o, f = get(w, "ours"), get(w, "numpy")
        if o and f:
            out.append((f"{w}: ours <= 1.1x numpy floor", f"{o / f:.2f}x", o / f <= 1.1))
    vec, loop = get("jacobian", "ours (vectorized)"), get("jacobian", "ours (row loop)")
    if vec and loop:
        out.append(("jacobian: vectorized >= 10x faster than our loop", f"{loop / vec:.1f}x", loop / vec >= 10))
    jr = get("jacobian", "torch func.jacrev")
    if vec and jr:
        out.append(("jacobian: vectorized <= torch.func.jacrev", f"{vec / jr:.2f}x", vec <= jr))
    for mode in ("full", "fast"):
        o, t = get("gradcheck", f"ours {mode}"), get("gradcheck", f"torch gradcheck {mode}")
        if o and t:
            out.append((f"gradcheck {mode}: ours <= PyTorch", f"{o / t:.2f}x", o <= t))
    gf = get("fast_softmax", "torch gradcheck fast_mode")
    for label in ("ours --fast (engine)", "ours --fast (torch)"):
        o = get("fast_softmax", label)
        if o and gf:
            out.append((f"fast_softmax: {label} catches it in <= 2x gradcheck fast_mode", f"{o / gf:.2f}x", o / gf <= 2))
    g = get("check_mlp", "torch gradcheck")
    for label, limit in (("ours (engine, in-process)", 0.1), ("ours CLI (engine)", 0.1),
                         ("ours (torch, in-process)", 0.25), ("ours CLI (torch)", 0.25)):
        o = get("check_mlp", label)
        if o and g:
            out.append((f"check_mlp: {label} <= {limit}x torch gradcheck", f"{o / g:.2f}x", o / g <= limit))
    d = get("dot_export", "ours")
    if d:
        out.append(("DOT export of 100,000 nodes under a few seconds", f"{d:.2f} s", d < 3.0))
    return out


def machine():
    import numpy as np
    info = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}
    try:
        import os
        info["cpus"] = os.cpu_count()
    except Exception:  # noqa: BLE001
        pass
    from importlib import metadata
    for mod in ("torch", "jax", "autograd"):       # HIPS autograd has no __version__
        try:
            info[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            pass
    return info


def render(results, tgts, info):
    from rich.console import Console
    from rich.table import Table
    con = Console()
    con.print(f"[bold]machine[/bold]: {', '.join(f'{k} {v}' for k, v in info.items())}")
    for name, r in results.items():
        t = Table(title=f"{name}: {r['what']}", title_justify="left")
        for c in ("system", "median", "min - max", "vs ours", "per op"):
            t.add_column(c)
        for label, v in r["systems"].items():
            t.add_row(label, _fmt(v["median"]), f"{_fmt(v['min'])} - {_fmt(v['max'])}",
                      f"{v['vs_ours']:.2f}x" if v.get("vs_ours") else "",
                      f"{v['per_op_us']:.2f} us" if "per_op_us" in v else "")
        con.print(t)
    if tgts:
        t = Table(title="targets", title_justify="left")
        for c in ("target", "measured", "met"):
            t.add_column(c)
        for desc, got, ok in tgts:
            t.add_row(desc, got, "[green]yes[/green]" if ok else "[red]no[/red]")
        con.print(t)


def markdown(results, tgts, info):
    """The figures as a Markdown section (what the README's benchmark table is pasted from)."""
    lines = [f"Measured on: {', '.join(f'{k} {v}' for k, v in info.items())}.", ""]
    lines += ["| workload | system | median | min - max | vs ours |", "|---|---|---:|---:|---:|"]
    for name, r in results.items():
        for label, v in r["systems"].items():
            per = f" ({v['per_op_us']:.2f} us/op)" if "per_op_us" in v else ""
            lines.append(f"| {name} | {label} | {_fmt(v['median'])}{per} | {_fmt(v['min'])} - {_fmt(v['max'])} | "
                         f"{v['vs_ours']:.2f}x |" if v.get("vs_ours") else
                         f"| {name} | {label} | {_fmt(v['median'])}{per} | {_fmt(v['min'])} - {_fmt(v['max'])} | |")
    if tgts:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {d} | {m} | {'yes' if ok else 'no'} |" for d, m, ok in tgts]
    return "\n".join(lines) + "\n"


def _fmt(s):
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.3f} s"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("-w", "--workloads", default=",".join(W.WORKLOADS),
                   help="comma-separated: " + ", ".join(W.WORKLOADS) + ", verdicts (which wrong backwards each "
                   "checker catches: benchmarks/verdicts.py; not run by default)")
    p.add_argument("-s", "--systems", default=None, help="comma-separated subset of: ours, numpy, torch, jax, hips")
    p.add_argument("--reps", type=int, default=7, help="repetitions per system (at least 7 for reported figures)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition, no warm-up (smoke test)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--markdown", action="store_true", help="print the figures as a Markdown table")
    p.add_argument("--from-json", metavar="FILE", help="render a saved --json run instead of measuring")
    a = p.parse_args(argv)
    names = [w.strip() for w in a.workloads.split(",") if w.strip()]
    if "verdicts" in names:                       # not a timing: its own table (or JSON)
        from . import verdicts
        verdicts.main(["--json"] if a.json else [])
        names.remove("verdicts")
        if not names:
            return 0
    bad = [w for w in names if w not in W.WORKLOADS]
    if bad:
        p.error(f"unknown workload {bad[0]!r}; choose from {', '.join(W.WORKLOADS)}")
    avail = W.systems_available()
    systems = avail if a.systems is None else [s for s in a.systems.split(",") if s in avail]
    if "ours" not in systems:
        systems.insert(0, "ours")
    reps = 1 if a.quick else max(a.reps, 7)
    if a.from_json:
        with open(a.from_json) as fh:
            saved = json.load(fh)
        results, info = saved["results"], saved["machine"]
    else:
        results = run(names, systems, reps, a.quick)
        info = machine()
    tgts = targets(results)
    if a.markdown:
        sys.stdout.write(markdown(results, tgts, info))
    elif a.json:
        json.dump({"machine": info, "results": results,
                   "targets": [{"target": d, "measured": m, "met": ok} for d, m, ok in tgts]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(results, tgts, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
