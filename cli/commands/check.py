"""`autograd check`: analytical vs numerical Jacobians, per input, with the worst element."""
import typer

from .. import options as o
from ..errors import CheckFailed


def check_command(
    ctx: typer.Context,
    target: o.Target,
    wrt: o.Wrt = None,
    eps: o.Eps = 1e-6,
    atol: o.Atol = 1e-5,
    rtol: o.Rtol = 1e-3,
    fast: bool = typer.Option(False, "--fast", help="Check v^T J u for random unit u, v (two evaluations, one backward)"),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on a suspicious verdict too (within tolerance, but far "
                                "beyond the finite-difference error)"),
    order: int = typer.Option(1, "--order", min=1, max=2, help="2: check second derivatives too (gradgradcheck)"),
    sweep: bool = typer.Option(False, "--sweep", help="Also the error for each eps from 1e-1 to 1e-12, its convergence "
                               "order and what it says (right, or wrong)"),
    plot: str = typer.Option(None, "--plot", help="With --sweep: write the error against eps as FILE.svg"),
    full: bool = typer.Option(False, "--full", help="On failure, show the whole Jacobians, not their corners"),
    dot: str = typer.Option(None, "--dot", help="Write the graph to FILE (.dot/.svg/.html/...) with the nodes whose local "
                            "check fails painted red (implies --locate)"),
    locate: bool = typer.Option(False, "--locate", help="Re-check every backward node on its own (done anyway when "
                                "a check fails) and say where the wrong ones were made"),
    func: o.Func = "f",
    backend: o.Backend = "auto",
    seed: o.Seed = 0,
    dtype: o.DType = "float64",
    json_out: o.Json = False,
    debug: o.Debug = False,
):
    """Check the gradients of an expression or a .py function against central finite differences.

    Example: autograd check examples/my_square.py --func MySquare --x 3

    Exit code 1 when any check fails. Defaults are PyTorch's: eps 1e-6, atol 1e-5, rtol 1e-3.
    """
    from ..boundary import run
    run(ctx, debug, lambda values: _check(target, values, wrt, eps, atol, rtol, fast, func, seed, dtype, json_out,
                                          backend=backend, strict=strict, order=order, locate=locate,
                                          sweep=sweep, plot=plot, full=full, dot=dot))


SIDE_CHECKS = {"deterministic": "backward gives the same gradients when run twice",
               "zero_grad_output": "a zero grad_output gives zero gradients",
               "fast": "the fast check (v^T J u against finite differences)",
               "batched_grad": "a batch of grad_outputs gives what one backward each gives",
               "grad_dtypes": "each gradient has its input's dtype"}


def _check(target_text, values, wrt, eps, atol, rtol, fast, func, seed, dtype, json_out, backend="auto", strict=False,
           order=1, locate=False, sweep=False, plot=None, full=False, dot=None):
    import warnings

    from engine.autograd.checker import check_gradients

    from .. import render
    from ..options import check_dtype
    from ..targets import (build_inputs, check_jacobian_size, check_precision, check_real_outputs, check_step,
                           load_target, output_names)
    check_dtype(dtype)
    if plot is not None:
        from ..errors import CliError
        if not sweep:
            raise CliError("--plot draws the --sweep: add --sweep")
        if not plot.lower().endswith((".svg", ".png")):
            raise CliError(f"--plot writes .svg or .png: name the file like sweep.svg, not '{plot}'")
        if plot.lower().endswith(".png"):
            import importlib.util
            if importlib.util.find_spec("matplotlib") is None:
                raise CliError("writing .png needs matplotlib (pip install 'autograd-cli[plot]'), or write .svg, "
                               "which needs nothing")
        from ..outputs import prepare
        plot = prepare(plot, graph=False)      # an SVG written here, no Graphviz needed
    if dot is not None:
        from ..outputs import prepare
        dot = prepare(dot)
        locate = True
    target = load_target(target_text, func, given=values, backend=backend)
    tensors, chosen = build_inputs(target, values, wrt=wrt, dtype=dtype, seed=seed)
    check_step(target, tensors, chosen, eps)
    outs, single = target.call(tensors)      # one forward: the outputs' names and sizes
    if not fast:
        check_jacobian_size(target, tensors, chosen, "use --fast (it checks v^T J u with two evaluations "
                            "and one backward) or fewer inputs with --wrt", outs=outs)
    names = list(tensors)
    onames = output_names(len(outs), single, names)
    check_real_outputs(target, outs, onames, "check")
    check_precision(target, outs)
    fn = target.engine_function(names)        # on PyTorch: its backward is PyTorch's autograd
    inputs = tuple(target.to_engine(t) for t in tensors.values())
    if order == 2:
        if not target.engine_graph:
            from ..errors import CliError
            raise CliError("--order 2 runs on the engine (PyTorch's backward is called once per row there): use "
                           "--backend engine, or torch.autograd.gradgradcheck in the file")
        from engine.autograd.checker import second_order
        fn, inputs, names = second_order(fn, inputs, names)
    from engine.autograd.checker import CheckInterrupted
    with warnings.catch_warnings(), _progress(json_out) as progress:
        warnings.simplefilter("ignore")
        try:
            report = check_gradients(fn, inputs, eps=eps, atol=atol, rtol=rtol, fast_mode=fast,
                                     input_names=names, output_names=onames if order == 1 else None,
                                     verdicts=True, progress=progress)
        except CheckInterrupted as e:
            _say_interrupted(e)
            raise KeyboardInterrupt from None
    swept = None
    if sweep:
        from engine.autograd.checker import sweep as run_sweep
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            swept = run_sweep(fn, inputs, input_names=names)
        if plot is not None:
            from ..outputs import write_text, write_with
            if plot.suffix == ".png":
                write_with(plot, lambda tmp: _png(swept, tmp))
            else:
                write_text(plot, _svg(swept))
    worst = _worst_failing_pair(report)
    from engine.autograd.checker import pattern
    shape_of_error = pattern(worst.analytical, worst.numerical, atol, rtol) if worst is not None else ""
    located = None
    if (locate or not report.passed or report.verdict == "suspicious") and target.engine_graph and order == 1:
        located, ran = _locate(target, fn, inputs, eps, atol, rtol)
        if dot is not None:
            from ..outputs import write_graph
            marks = {c.node_ref: f"{c.verdict.upper()}: local check, max abs err {c.max_abs_err:.3g}"
                     for c in located if c.verdict in ("fail", "suspicious")}
            write_graph(ran, {n: t for n, t in zip(names, inputs)}, dot, highlight=marks, show_values=True)
    elif dot is not None:
        from ..errors import CliError
        raise CliError("--dot marks the nodes a local check finds wrong, which runs on the engine: use "
                       "--backend engine, or 'autograd graph' for PyTorch's graph")
    if json_out:
        doc = {**target.json_fields(), **render.check_json(report)}
        if worst is not None:
            doc["pattern"] = shape_of_error or None
            if worst.analytical.size <= JSON_MATRIX_CAP:
                doc["jacobians"] = {"output": worst.output_name, "input": worst.input_name,
                                    "analytical": render.to_jsonable(worst.analytical),
                                    "numerical": render.to_jsonable(worst.numerical)}
        if swept is not None:
            doc["sweep"] = {"points": [{"eps": e, "max_abs_err": v} for e, v in zip(swept.eps, swept.errors)],
                            "order": swept.order, "best_eps": swept.best_eps, "verdict": swept.verdict,
                            "message": swept.message}
        if located is not None:
            doc["locate"] = [{"node": c.node, "where": c.where, "custom_function": c.custom,
                              "max_abs_err": c.max_abs_err, "max_rel_err": c.max_rel_err, "passed": c.passed,
                              "verdict": c.verdict} for c in located]
        render.dump_json(doc)
    else:
        con = render.console()
        render.backend_line(con, target)
        con.print(f"[bold]gradient check[/bold] (eps={eps:g}, atol={atol:g}, rtol={rtol:g}"
                  f"{', fast mode' if fast else ''}): |analytical - numerical| <= atol + rtol*|numerical|")
        t = render.table(None, ["input", "abs err", "rel err", "worst at", "analytical",
                                "numerical", "result"])
        for p in report.pairs:
            o_lab = render.labels(p.output_name, p.output_shape)
            i_lab = render.labels(p.input_name, p.input_shape)
            oi = _flat(p.worst_index[0], p.output_shape)
            ii = _flat(p.worst_index[1], p.input_shape)
            if not i_lab or not o_lab:
                where = "- (empty)"          # an empty input or output has no element to name
            else:
                where = i_lab[ii] if len(o_lab) == 1 else f"{o_lab[oi]}, {i_lab[ii]}"
            several = len({q.output for q in report.pairs if q.kind == "jacobian"}) > 1
            label = (f"{p.input_name}.grad" if p.kind == "grad" else
                     f"d{p.output_name}/d{p.input_name}" if several else p.input_name)   # as `jacobian` titles it
            t.add_row(render.esc(label), f"{p.max_abs_error:.3g}",
                      f"{p.max_rel_error:.3g}", render.esc(where),
                      f"{p.worst_analytical:.6g}", f"{p.worst_numerical:.6g}",
                      "[green]pass[/green]" if p.passed else "[red]FAIL[/red]")
        if report.pairs:
            render.show(con, t)
        elif fast:
            con.print(f"fast check: {'passed' if report.passed else 'failed'}")
        for k, ok in report.checks.items():
            if not ok:
                con.print(f"[red]side check failed[/red]: {SIDE_CHECKS.get(k, k)}")
        for w in report.warnings:
            render.warn(w)
        if not report.passed and report.suspects:
            con.print(f"custom Functions on this graph (the built-in ops are tested): {', '.join(report.suspects)}")
        if worst is not None:
            _show_heat(con, worst, atol, rtol, full)
            if shape_of_error:
                con.print(f"[bold]the error's shape[/bold]: {render.esc(shape_of_error)}")
        if swept is not None:
            _show_sweep(con, swept)
        if located is not None:
            _show_located(con, located, locate)
        if report.verdict == "suspicious":
            con.print(f"[yellow]SUSPICIOUS[/yellow]: {render.esc(report.suspicion)}"
                      + ("" if strict else " (exit 0; --strict makes this exit 1)"))
        else:
            con.print("[green]passed[/green]" if report.passed else
                      f"[red]FAILED[/red]: {render.esc(report.failures[0]) if report.failures else ''}")
    if not report.passed or (strict and report.verdict == "suspicious"):
        raise CheckFailed()


def _locate(target, fn, inputs, eps, atol, rtol):
    """Every backward node checked on its own (engine.autograd.locate), with where it was made:
    file:line in a .py target, the part of an expression."""
    import warnings

    from engine.autograd.locate import locate

    from ..targets import _USER_FILES
    span_of = None
    if target.kind == "expression":
        from expressions.compiler import CURRENT_SPAN
        span_of = lambda: CURRENT_SPAN[0]  # noqa: E731
    ran = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = locate(fn, inputs, eps=eps, atol=atol, rtol=rtol, user_files={str(p) for p in _USER_FILES},
                        span_of=span_of, outputs=ran)
    for c in checks:
        if c.span is not None:
            a, b = c.span
            c.where = f"'{target.text[a:b]}' (columns {a + 1}-{b})"
        elif c.where:
            c.where = c.where.rsplit("/", 1)[-1]
    return checks, ran


def _show_located(con, checks, asked):
    from .. import render
    wrong = [c for c in checks if c.verdict in ("fail", "suspicious")]
    shown = checks if asked or len(checks) <= 12 else wrong
    t = render.table("each backward node against its own forward (local checks)",
                     ["node", "made at", "max abs err", "result"])
    marks = {"pass": "[green]pass[/green]", "fail": "[red]FAIL[/red]", "suspicious": "[yellow]SUSPICIOUS[/yellow]",
             "kink": "kink (not judged)"}
    for c in shown:
        t.add_row(render.esc(c.node), render.esc(c.where or "-"), f"{c.max_abs_err:.3g}", marks[c.verdict])
    render.show(con, t)
    if wrong:
        first = wrong[0]
        con.print(f"first wrong node in forward order: [bold]{render.esc(first.node)}[/bold]"
                  + (f" at {render.esc(first.where)}" if first.where else "")
                  + (" (within tolerance, far beyond the finite-difference error)" if first.verdict == "suspicious"
                     else ""))
    elif any(c.verdict == "kink" for c in checks):
        con.print("no node is wrong away from kinks: the mismatch is at a point where an op has no derivative "
                  "(its subgradient choice), not a bug")
    else:
        con.print("every node passes on its own: look at how they are combined (or at the tolerances)")


JSON_MATRIX_CAP = 10_000      # elements of a Jacobian --json carries
PROGRESS_AFTER = 1.0          # seconds: a check that has run this long shows a progress bar


class _progress:
    """A Rich progress bar with an ETA on stderr for a long check: only on a terminal, never with
    --json, and only once the check has run PROGRESS_AFTER seconds (short checks stay quiet)."""

    def __init__(self, json_out):
        import sys
        self.wanted = not json_out and sys.stderr is not None and sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        import time
        self.start = time.monotonic()
        return self.update if self.wanted else None

    def update(self, done, total):
        import time
        if self.bar is None:
            if time.monotonic() - self.start < PROGRESS_AFTER or done >= total:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("finite differences"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("check", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _say_interrupted(e):
    """What a Ctrl-C'd check had found (on stderr; the boundary then exits 130)."""
    from .. import render
    lines = [f"interrupted after differencing {e.done} of {e.total} input elements"]
    for p in e.pairs:
        if p.kind == "jacobian":
            lines.append(f"  {p.output_name} / {p.input_name}: {'pass' if p.passed else 'FAIL'} "
                         f"(max abs err {p.max_abs_error:.3g})")
    if len(lines) == 1:
        lines.append("  no input was finished: nothing to report yet")
    for line in lines:
        render.warn_line(line)


def _worst_failing_pair(report):
    failing = [p for p in report.pairs if p.kind == "jacobian" and not p.passed and p.analytical.size]
    return max(failing, key=lambda p: p.max_abs_error, default=None)


def _show_heat(con, p, atol, rtol, full):
    """The failing pair's analytical and numerical Jacobians and their difference, coloured by
    how far each element is outside the tolerance (corners of a large one unless --full)."""
    import numpy as np

    from .. import render
    from .jacobian import _num, _pick
    a, n = p.analytical, p.numerical
    rows, cols = _pick(a.shape[0], full, 4), _pick(a.shape[1], full, 3)
    rlab, clab = render.labels(p.output_name, p.output_shape), render.labels(p.input_name, p.input_shape)
    over = np.abs(a - n) / (atol + rtol * np.abs(n))
    con.print(f"[bold]d{render.esc(p.output_name)}/d{render.esc(p.input_name)} where it fails[/bold] "
              f"(rows: {render.esc(p.output_name)} elements, columns: {render.esc(p.input_name)} elements; "
              "red: outside the tolerance)")
    for title, m in (("analytical", a), ("numerical", n), ("difference", a - n)):
        t = render.table(title, [""] + [clab[j] if j is not None else "..." for j in cols])
        for i in rows:
            if i is None:
                t.add_row("...", *["..." for _ in cols])
                continue
            cells = []
            for j in cols:
                if j is None:
                    cells.append("...")
                    continue
                text = _num(m[i, j])
                if title == "difference":
                    text = f"[red]{text}[/red]" if over[i, j] > 1 else f"[green]{text}[/green]"
                elif over[i, j] > 1:
                    text = f"[bold]{text}[/bold]"
                cells.append(text)
            t.add_row(rlab[i], *cells)
        render.show(con, t)
    if None in rows or None in cols:
        render.note(f"corners of a {a.shape[0]} x {a.shape[1]} Jacobian; --full shows every element")


def _show_sweep(con, s):
    """The error for each eps as a table with a bar per row (longer is larger, on a log scale)."""
    import math

    from .. import render
    logs = [math.log10(max(e, 1e-300)) for e in s.errors]
    lo, hi = min(logs), max(logs)
    t = render.table("finite-difference error against the step (the worst swept elements)",
                     ["eps", "max abs err", "log scale"])
    for e, err, lg in zip(s.eps, s.errors, logs):
        bar = "#" * (1 + round(30 * (lg - lo) / (hi - lo))) if hi > lo else "#"
        mark = " <- smallest" if e == s.best_eps else ""
        t.add_row(f"{e:.0e}", f"{err:.2e}", bar + mark)
    render.show(con, t)
    color = {"right": "green", "wrong": "red"}.get(s.verdict, "yellow")
    con.print(f"[{color}]sweep[/{color}]: {render.esc(s.message)}")


def _png(s, path):
    """The sweep drawn by matplotlib (the [plot] extra) into path, as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.loglog(s.eps, [max(e, 1e-300) for e in s.errors], "o-")
    ax.invert_xaxis()
    ax.set_xlabel("eps")
    ax.set_ylabel("max abs error")
    ax.set_title(f"{s.verdict}: slope {s.order:.1f}")
    fig.tight_layout()
    fig.savefig(str(path), format="png")
    plt.close(fig)


def _svg(s, width=480, height=300):
    """The sweep as a small SVG line plot: log10(eps) across, log10(error) up."""
    import html
    import math
    xs = [math.log10(e) for e in s.eps]
    ys = [math.log10(max(v, 1e-300)) for v in s.errors]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad = 40

    def px(x):
        return pad + (x1 - x) / (x1 - x0) * (width - 2 * pad)     # larger eps on the left

    def py(y):
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    labels = "".join(f'<text x="{px(x):.1f}" y="{height - pad + 16}" font-size="10" text-anchor="middle">'
                     f"{s.eps[i]:.0e}</text>" for i, x in enumerate(xs) if i % 2 == 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="Helvetica,Arial,sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>'
            f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
            + "".join(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="#1f77b4"/>' for x, y in zip(xs, ys))
            + labels
            + f'<text x="{width / 2}" y="{height - 6}" font-size="11" text-anchor="middle">eps</text>'
            f'<text x="12" y="{height / 2}" font-size="11" transform="rotate(-90 12 {height / 2})" '
            f'text-anchor="middle">max abs error (log, {10 ** y0:.0e} to {10 ** y1:.0e})</text>'
            f'<text x="{width / 2}" y="16" font-size="12" text-anchor="middle">{html.escape(s.verdict)}: slope '
            f'{s.order:.1f}</text></svg>\n')


def _flat(idx, shape):
    n = 0
    for i, s in zip(idx, shape):
        n = n * s + i
    return n
