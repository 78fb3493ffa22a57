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
    every: bool = typer.Option(False, "--all", help="A .py file: check every custom Function and every top-level "
                               "function that has values for its inputs, one summary row each"),
    points: int = typer.Option(1, "--points", min=1, max=1000, help="Check at N points: the given values, then "
                               "N-1 random ones of the same shapes (standard normal, seeded by --seed)"),
    func: o.Func = "f",
    backend: o.Backend = "auto",
    seed: o.Seed = 0,
    dtype: o.DType = "",
    json_out: o.Json = False,
    debug: o.Debug = False,
):
    """Check the gradients of an expression or a .py function against central finite differences.

    Example: autograd check examples/my_square.py --func MySquare --x 3

    Exit code 1 when any check fails. Defaults are PyTorch's: eps 1e-6, atol 1e-5, rtol 1e-3.
    """
    from ..boundary import run
    opts = dict(backend=backend, strict=strict, order=order, locate=locate, sweep=sweep, plot=plot, full=full, dot=dot)
    if every or points > 1:
        run(ctx, debug, lambda values: _check_many(target, values, wrt, eps, atol, rtol, fast, func, seed, dtype,
                                                   json_out, every, points, **opts))
        return
    run(ctx, debug, lambda values: _check(target, values, wrt, eps, atol, rtol, fast, func, seed, dtype, json_out,
                                          **opts))


SIDE_CHECKS = {"deterministic": "backward gives the same gradients when run twice",
               "zero_grad_output": "a zero grad_output gives zero gradients",
               "fast": "the fast check (v^T J u against finite differences)",
               "batched_grad": "a batch of grad_outputs gives what one backward each gives",
               "grad_dtypes": "each gradient has its input's dtype"}


def _check(target_text, values, wrt, eps, atol, rtol, fast, func, seed, dtype, json_out, backend="auto", strict=False,
           order=1, locate=False, sweep=False, plot=None, full=False, dot=None):
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
    target = load_target(target_text, func, given=values, backend=backend)
    if dot is not None:
        locate = True
    tensors, chosen = build_inputs(target, values, wrt=wrt, dtype=dtype, seed=seed)
    check_step(target, tensors, chosen, eps)
    outs, single = target.call(tensors)      # one forward: the outputs' names and sizes
    if not fast:
        check_jacobian_size(target, tensors, chosen, "use --fast (it checks v^T J u with two evaluations "
                            "and one backward) or fewer inputs with --wrt", outs=outs, order=order)
    check_real_outputs(target, outs, output_names(len(outs), single, list(tensors)), "check")
    check_precision(target, outs)
    from ..checking import run_check
    with _progress(json_out) as progress:
        result = run_check(target, tensors, outputs=(outs, single), eps=eps, atol=atol, rtol=rtol, fast=fast, order=order,
                           locate=locate, sweep=sweep, seed=seed, progress=progress, on_interrupt=_say_interrupted)
    swept, located = result.swept, result.located
    if plot is not None and swept is not None:
        from ..outputs import write_text, write_with
        if plot.suffix == ".png":
            write_with(plot, lambda tmp: _png(swept, tmp))
        else:
            write_text(plot, _svg(swept))
    if dot is not None and located is not None:
        from ..outputs import write_graph
        write_graph(result.ran, result.leaves, dot, highlight=result.marks(), show_values=True,
                    view=target.graph_view())
    if json_out:
        render.dump_json(result.to_json())
    else:
        render_result(render.console(), result, strict=strict, full=full, locate_asked=locate)
    if result.failed(strict):
        raise CheckFailed()


def _check_many(target_text, values, wrt, eps, atol, rtol, fast, func, seed, dtype, json_out, every, points,
                backend="auto", strict=False, order=1, locate=False, sweep=False, plot=None, full=False, dot=None):
    """--all (every custom Function and top-level function of a file) and --points N (the same
    target at N points): one summary row per check, exit 1 if any fails; the report of the first
    failing one follows the table (the first one's when all pass)."""
    import numpy as np

    from .. import render
    from ..checking import run_check
    from ..errors import CliError
    from ..options import check_dtype
    from ..targets import build_inputs, check_jacobian_size, load_target
    check_dtype(dtype)
    for given, name in ((plot, "--plot"), (dot, "--dot"), (sweep or None, "--sweep")):
        if given is not None:
            raise CliError(f"{name} draws one check: leave it out with --all or --points, or check one target")
    if every and not target_text.lower().endswith(".py"):
        raise CliError("--all checks the Functions and functions of a .py file: give one")
    if every and func != "f":
        raise CliError("--all checks every function of the file: leave out --func, or check one without --all")
    names = _candidates(target_text) if every else [func]
    rows, results = [], []
    for name in names:
        try:
            target = load_target(target_text, name, given=values, backend=backend)
            given = {k: v for k, v in values.items() if k in target.names} if every else values
            tensors, chosen = build_inputs(target, _Given(given, values), wrt=wrt, dtype=dtype, seed=seed)
        except CliError as e:
            if not every:
                raise
            rows.append({"target": name, "point": None, "verdict": "skipped", "detail": e.message})
            continue
        rng = np.random.default_rng(seed)
        for k in range(points):
            if k:                      # a random point of the same shapes (seeded)
                tensors = {n: _redrawn(target, t, rng, n in chosen) for n, t in tensors.items()}
            outs, single = target.call(tensors)
            if not fast:
                check_jacobian_size(target, tensors, chosen, "use --fast or fewer inputs with --wrt", outs=outs,
                                    order=order)
            result = run_check(target, tensors, outputs=(outs, single), eps=eps, atol=atol, rtol=rtol, fast=fast,
                               order=order, locate=locate, seed=seed)
            detail = result.report.suspicion or result.report.inconclusive or \
                (result.report.failures[0] if result.report.failures else "")
            at = ", ".join(f"{n}={render.compact(t)}" for n, t in tensors.items()) if points > 1 else ""
            rows.append({"target": name, "point": k if points > 1 else None, "values": at or None,
                         "verdict": result.verdict, "failed": result.failed(strict), "detail": detail})
            results.append(result)
    failed = [r for r in results if r.failed(strict)]
    if json_out:
        order_of = ("fail", "inconclusive", "suspicious", "pass")        # the worst one, as a single check's
        worst = next((v for v in order_of if any(r.verdict == v for r in results)), "pass")
        render.dump_json({"passed": not failed, "verdict": worst, "checks": rows,
                          "reports": [r.to_json() for r in results]})
    else:
        con = render.console()
        t = render.table("every check" if every else f"the check at {points} points",
                         ["target", "point", "verdict", "why"] if points > 1 else ["target", "verdict", "why"])
        marks = {"pass": "[green]pass[/green]", "fail": "[red]FAIL[/red]", "suspicious": "[yellow]SUSPICIOUS[/yellow]",
                 "inconclusive": "[yellow]INCONCLUSIVE[/yellow]", "skipped": "skipped"}
        for row in rows:
            cells = [row["target"]] + ([f"{row['point']}: {row['values']}" if row["point"] is not None else "-"]
                                       if points > 1 else []) + [marks[row["verdict"]], row["detail"]]
            t.add_row(*[render.esc(c) if c is not None else "" for c in cells[:-2]], cells[-2], render.esc(cells[-1]))
        render.show(con, t)
        if results:
            con.print("")
            render_result(con, failed[0] if failed else results[0], strict=strict, full=full, locate_asked=locate)
        ran = sum(r["verdict"] != "skipped" for r in rows)
        con.print(f"{ran - len(failed)} of {ran} checks pass" + (f"; {len(rows) - ran} skipped" if len(rows) > ran else ""))
    if not results:
        raise CliError("nothing to check: no custom Function or function of the file has values for its inputs "
                       "(give them with --NAME VALUES, or an `inputs` dict in the file)")
    if failed:
        raise CheckFailed()


class _Given(dict):
    """The values for one target, keeping what the boundary attached to all of them."""

    def __init__(self, given, values):
        super().__init__(given)
        self.known_options = getattr(values, "known_options", ())
        self.option_like = {n for n in getattr(values, "option_like", ()) if n in given}


def _redrawn(target, t, rng, grad):
    """A tensor like t with standard normal values (its dtype, requires_grad as it was)."""
    import numpy as np
    arr = rng.standard_normal(tuple(t.shape))
    new = target.lib.tensor(np.asarray(arr, dtype=np.float64)).to(t.dtype)
    return new.requires_grad_(True) if grad else new


def _candidates(path):
    """The custom Function classes and public top-level functions of a .py file, in order."""
    import ast
    import pathlib

    from ..errors import CliError
    try:
        tree = ast.parse(pathlib.Path(path).read_text(errors="replace"))
    except (OSError, SyntaxError) as e:
        raise CliError(f"cannot read the functions of '{path}': {e}") from None
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Attribute) and b.attr == "Function") or (isinstance(b, ast.Name) and
                                                                            b.id.endswith("Function"))
                for b in node.bases):
            out.append(node.name)
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            out.append(node.name)
    return out

def render_result(con, result, *, strict=False, full=False, locate_asked=False, warn=None):
    """A check's report for a person, as `autograd check` prints it (the Python API's text too);
    warn(text) says a warning (default: on stderr)."""
    from .. import render
    warn = warn or render.warn
    target, report, second, swept, located, worst = (result.target, result.report, result.second, result.swept,
                                                     result.located, result.worst)
    eps, atol, rtol, fast = report.eps, report.atol, report.rtol, report.fast_mode
    shape_of_error, locate = result.pattern, locate_asked
    render.backend_line(con, target)
    con.print(f"[bold]gradient check[/bold] (eps={eps:g}, atol={atol:g}, rtol={rtol:g}"
              f"{', fast mode' if fast else ''}): |analytical - numerical| <= atol + rtol*|numerical|")
    if second is not None:
        con.print("[bold]first order[/bold]: the gradients")
    _show_pairs(con, report, fast)
    if second is not None:
        con.print("[bold]second order[/bold] (gradgradcheck): the gradients of the first derivatives "
                  "v . dy/dx with respect to the inputs and v")
        _show_pairs(con, second, fast)
        for w in second.warnings:
            warn(w)
    for w in report.warnings:
        warn(w)
    if result.differences and result.differences.get("note") and not target.engine_graph:
        render.remark(result.differences["note"])
    if not report.passed and report.suspects:
        from engine.autograd.checker import SUSPECTS_WORDS
        con.print(f"{SUSPECTS_WORDS}: {', '.join(report.suspects)}")
    if worst is not None:
        _show_heat(con, worst, atol, rtol, full)
    if shape_of_error:
        con.print(f"[bold]the error's shape[/bold]: {render.esc(shape_of_error)}")
    if swept is not None:
        _show_sweep(con, swept)
    if located is not None:
        _show_located(con, located, locate, report.verdict, torch=not target.engine_graph,
                      second=None if second is None else second.verdict or ("pass" if second.passed else "fail"),
                      on=result.located_on)
    verdict = result.verdict
    # the report that decides: a failing one first, else a suspicious one (first order first)
    deciding = next((r for r in (report, second) if r is not None and r.verdict == verdict), report)
    which = "" if second is None else (" (first order)" if deciding is report else " (second order)")
    if verdict == "suspicious":
        con.print(f"[yellow]SUSPICIOUS[/yellow]{which}: {render.esc(deciding.suspicion)}"
                  + ("" if strict else " (exit 0; --strict makes this exit 1)"))
    elif verdict == "inconclusive":
        con.print(f"[yellow]INCONCLUSIVE[/yellow]{which}: {render.esc(deciding.inconclusive)} (exit 1: the "
                  "gradient is not vouched for)")
    elif verdict == "pass":
        con.print("[green]passed[/green]" + (" (first and second order)" if second is not None else ""))
    else:
        con.print(f"[red]FAILED[/red]{which}: {render.esc(deciding.failures[0]) if deciding.failures else ''}")


def _show_pairs(con, report, fast):
    """The table of (output, input) results of one report, and its failed side checks."""
    from .. import render
    t = render.table(None, ["input", "abs err", "rel err", "worst at", "analytical", "numerical", "result"])
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
        if p.kind == "float64":                  # analytical float32 against analytical float64
            label = f"{p.input_name}.grad vs float64" if p.output_name == "backward()" else f"{label} vs float64"
        result = "[green]pass[/green]" if p.passed else "[red]FAIL[/red]"
        if p.note:
            result = (f"[green]{p.note}[/green]" if p.note.startswith("pass") else
                      f"[red]FAIL[/red] ({p.note})" if p.note.startswith(("wrong", "differs")) else
                      f"[yellow]{p.note}[/yellow]")
        # the error at the element the row names ("worst at"), not the pair's largest elsewhere
        t.add_row(render.esc(label), f"{p.worst_abs_error:.3g}",
                  f"{p.worst_rel_error:.3g}", render.esc(where),
                  f"{p.worst_analytical:.6g}", f"{p.worst_numerical:.6g}", result)
    if report.pairs:
        render.show(con, t)
    elif fast:
        con.print(f"fast check: {'passed' if report.passed else 'failed'}")
    for k, ok in report.checks.items():
        if not ok:
            con.print(f"[red]side check failed[/red]: {SIDE_CHECKS.get(k, k)}")


def _made_at(c):
    """file:line, with the nn.Module it was made in and whether it ran inside another Function."""
    where = c.where or "-"
    if c.module:
        where += f" in {c.module}"
    if c.nth:
        k, n = c.nth
        where += f" ({k}{'st' if k == 1 else 'nd' if k == 2 else 'rd' if k == 3 else 'th'} of {n} applications here)"
    if c.nested:
        where += " (inside another Function's forward)"
    if c.in_backward_of:
        where += f" (inside {c.in_backward_of}'s backward)"
    return where


def _show_located(con, checks, asked, verdict="fail", torch=False, second=None, on=""):
    """The local checks' table and what it says. second: the whole's second-order verdict with
    --order 2 (then each custom Function is also checked at second order on its own; a built-in
    op's double backward is trusted, as its first derivative is on PyTorch)."""
    from .. import render
    wrong = [c for c in checks if c.verdict in ("fail", "suspicious") and not c.in_backward_of]
    # wrong at second order: a Function applied inside such a one's backward and wrong on its own
    # first (that is where to look), then the Functions wrong at second order
    inner = [c for c in checks if c.in_backward_of and c.verdict in ("fail", "suspicious")]
    wrong2 = inner + [c for c in checks if c.second == "fail" and c not in wrong]
    shown = checks if asked or len(checks) <= 12 else wrong + wrong2
    scope = ("each custom Function application against its own forward (local checks; built-in PyTorch ops are "
             "trusted" if torch else "each backward node against its own forward (local checks")
    if second is not None:
        scope += "; custom Functions also at second order"
    if on:
        scope += f"; on {on}"
    t = render.table(scope + ")", ["node", "made at", "max abs err", "result"])
    marks = {"pass": "[green]pass[/green]", "fail": "[red]FAIL[/red]", "suspicious": "[yellow]SUSPICIOUS[/yellow]",
             "kink": "kink (not judged)", "domain": "step leaves the domain (not judged)"}
    for c in shown:
        mark = marks[c.verdict]
        if c.second == "fail":
            mark = ("[red]FAIL[/red] (and at second order)" if c.verdict == "fail" else
                    mark + ", [red]FAIL at second order[/red]")
        t.add_row(render.esc(c.node), render.esc(_made_at(c)), f"{c.max_abs_err:.3g}", mark)
    if checks:
        render.show(con, t)
    elif torch:
        con.print("no custom Function is applied: the graph is PyTorch's own ops, which are trusted")
        return
    if wrong and verdict == "inconclusive":
        # the same finite differences that could not settle the whole judge each node: not a word
        # about wrong nodes, only where they disagree
        first = wrong[0]
        con.print(f"first node whose local check disagrees with its finite differences: [bold]{render.esc(first.node)}"
                  f"[/bold]" + (f" at {render.esc(_made_at(first))}" if first.where or first.module else "")
                  + " (finite differences are inconclusive here as well, so this is not a verdict on its backward)")
    elif wrong:
        first = wrong[0]
        con.print(f"first wrong node in forward order: [bold]{render.esc(first.node)}[/bold]"
                  + (f" at {render.esc(_made_at(first))}" if first.where or first.module else "")
                  + (" (within tolerance, far beyond the finite-difference error)" if first.verdict == "suspicious"
                     else "")
                  + (f": two backward calls with the same cotangent differ by up to {first.spread:.3g} (not "
                     "reentrant, or nondeterministic)" if first.spread > 0 else ""))
    elif wrong2 and wrong2[0].in_backward_of:
        first = wrong2[0]
        con.print(f"first node wrong at second order: [bold]{render.esc(first.node)}[/bold] at "
                  f"{render.esc(_made_at(first))}: {render.esc(first.in_backward_of)}'s backward applies it, so "
                  f"{render.esc(first.in_backward_of)}'s second derivatives go through its backward, which is wrong "
                  f"on its own (local check, max abs error {first.max_abs_err:.3g})")
    elif wrong2:
        first = wrong2[0]
        con.print(f"first node wrong at second order in forward order: [bold]{render.esc(first.node)}[/bold]"
                  + (f" at {render.esc(_made_at(first))}" if first.where or first.module else "")
                  + f": its first derivative is right, its backward's own derivative is not "
                  f"({render.esc(first.second_why)})")
    elif any(c.verdict == "kink" for c in checks):
        con.print("no node is wrong away from kinks: the mismatch is at a point where an op has no derivative "
                  "(its subgradient choice), not a bug")
    elif second is not None and second != "pass":
        con.print("every node passes on its own at first order, and every custom Function at second order; the "
                  "second-order mismatch is in how they combine or in a built-in op's double backward, which "
                  "local checks trust" if second == "fail" else
                  "every node passes on its own at first order, and every custom Function at second order; the "
                  "second order is inconclusive because finite differences cannot resolve it (why: below)")
    else:
        con.print("every node passes on its own, as the whole does" if verdict == "pass" else
                  "every node passes on its own; the whole is inconclusive only because finite differences cannot "
                  "resolve it (why: below)" if verdict == "inconclusive" else
                  "every node passes on its own: look at how they are combined (or at the tolerances)")


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
    logs = [math.log10(max(e, 1e-300)) if math.isfinite(e) else None for e in s.errors]
    known = [v for v in logs if v is not None] or [0.0]
    lo, hi = min(known), max(known)
    t = render.table("finite-difference error against the step (the worst swept elements)",
                     ["eps", "max abs err", "log scale"])
    for e, err, lg in zip(s.eps, s.errors, logs):
        if lg is None:                 # x +- eps left the function's domain (or reached its pole)
            t.add_row(f"{e:.0e}", f"{err:.2e}", "(left the domain)")
            continue
        bar = "#" * (1 + round(30 * (lg - lo) / (hi - lo))) if hi > lo else "#"
        mark = " <- smallest" if e == s.best_eps else ""
        t.add_row(f"{e:.0e}", f"{err:.2e}", bar + mark)
    render.show(con, t)
    color = {"right": "green", "wrong": "red"}.get(s.verdict, "yellow")
    con.print(f"[{color}]sweep[/{color}]: {render.esc(s.message)}")


def _png(s, path):
    """The sweep drawn by matplotlib (the [plot] extra) into path, as PNG."""
    import matplotlib
    import numpy as np
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.loglog(s.eps, [max(e, 1e-300) if np.isfinite(e) else np.nan for e in s.errors], "o-")
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
    kept = [(e, v) for e, v in zip(s.eps, s.errors) if math.isfinite(v)] or [(s.eps[0], 1.0)]   # left the domain
    xs = [math.log10(e) for e, _ in kept]
    ys = [math.log10(max(v, 1e-300)) for _, v in kept]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad = 40

    def px(x):
        return pad + (x1 - x) / (x1 - x0) * (width - 2 * pad)     # larger eps on the left

    def py(y):
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    labels = "".join(f'<text x="{px(x):.1f}" y="{height - pad + 16}" font-size="10" text-anchor="middle">'
                     f"{kept[i][0]:.0e}</text>" for i, x in enumerate(xs) if i % 2 == 0)
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
