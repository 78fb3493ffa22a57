"""`autograd jacobian`: every output's Jacobian with respect to every chosen input."""
import typer

from .. import options as o

MAX_CELLS = 400
JSON_MAX = 10 ** 6     # Jacobian elements --json writes (about 25 MB of text); -o FILE.npz takes any size


def jacobian_command(
    ctx: typer.Context,
    target: o.Target,
    wrt: o.Wrt = None,
    check: bool = typer.Option(False, "--check", help="Also compare with finite differences"),
    full: bool = typer.Option(False, "--full", help="Show every entry of large Jacobians"),
    func: o.Func = "f",
    backend: o.Backend = "auto",
    seed: o.Seed = 0,
    dtype: o.DType = "",
    json_out: o.Json = False,
    output: str = typer.Option(None, "-o", "--output", help="Save the Jacobians to FILE.npz (numpy's "
                               "np.load reads them, one array per output/input pair) or FILE.npy (one pair)"),
    debug: o.Debug = False,
):
    """The Jacobian of an expression or a .py function (shape output.shape + input.shape).

    Example: autograd jacobian "tanh(W @ x)" --W "1,2;3,4" --x 0.5,-1
    """
    from ..boundary import run
    run(ctx, debug, lambda values: _jacobian(target, values, wrt, check, full, func, seed, dtype, json_out, backend=backend,
                                             output=output))


def _jacobian(target_text, values, wrt, check, full, func, seed, dtype, json_out, backend="auto", output=None):
    import re
    import warnings

    import numpy as np

    from engine.autograd import functional

    from .. import render
    from ..errors import CheckFailed
    from ..options import check_dtype
    from ..targets import (build_inputs, check_jacobian_size, check_precision, check_real_outputs, check_step,
                           load_target, output_names)
    from ..outputs import prepare, write_with
    check_dtype(dtype)
    out_file = prepare(output, formats=(".npz", ".npy"))
    target = load_target(target_text, func, given=values, backend=backend)
    tensors, chosen = build_inputs(target, values, wrt=wrt, dtype=dtype, seed=seed)
    if check:
        check_step(target, tensors, chosen, 1e-6, own_option=False)
    n = check_jacobian_size(target, tensors, chosen, "pick fewer inputs with --wrt or smaller values ("
                            "'autograd check --fast' checks gradients without the Jacobian)")
    if json_out and out_file is None and n > JSON_MAX:
        from ..errors import CliError
        raise CliError(f"the Jacobian has {n:,} elements, too many for --json (at most {JSON_MAX:,}, about "
                       f"{JSON_MAX * 25 // 10 ** 6} MB of text): save it with -o jacobian.npz (numpy's format; "
                       "np.load reads it) or pick fewer inputs with --wrt")
    names = list(tensors)
    fn = target.engine_function(names)        # on PyTorch: its backward is PyTorch's autograd
    eng = {n: target.to_engine(t) for n, t in tensors.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs, single = target.call(tensors)
        check_real_outputs(target, outs, output_names(len(outs), single, names), "jacobian")
        if check:
            check_precision(target, outs, "jacobian --check")
        wrt_pos = [names.index(n) for n in chosen]

        def f(*xs):
            full_args = [eng[n].detach() for n in names]
            for p, x in zip(wrt_pos, xs):
                full_args[p] = x
            return fn(*full_args)
        if not target.engine_graph:      # the inputs not chosen are constants on PyTorch's side too
            f.backend = _Partial(fn.backend, [eng[n] for n in names], wrt_pos)
        if target.engine_graph:
            J = functional.jacobian(f, tuple(eng[n] for n in chosen), _warn_rows=False)  # rows for a custom
            table = [J] if single else list(J)                                         # Function: how, not what
        else:                 # PyTorch's autograd, through the checker's backend (batched rows where it can)
            table = _backend_jacobian(fn, [eng[n].detach().requires_grad_(n in chosen) for n in names], wrt_pos)
    # outputs are y, y0, y1...; "out" when an input is already called y (`dy/dy` told nothing)
    out_names = output_names(len(outs), single, names)
    report = None
    if check:
        from engine.autograd.checker import check_gradients
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = check_gradients(f, tuple(eng[n].detach().requires_grad_(True) for n in chosen),
                                     input_names=chosen, output_names=out_names, verdicts=True)
    if out_file is not None:
        arrays = {}
        for oname, row in zip(out_names, table):
            for iname, jac in zip(chosen, row):
                arrays[iname if single else f"{oname}/{iname}"] = np.asarray(jac.numpy())
        if out_file.suffix == ".npy" and len(arrays) > 1:
            from ..errors import CliError
            raise CliError(f"{len(arrays)} Jacobians ({', '.join(arrays)}) do not fit one .npy: use .npz")

        def save(tmp):
            with open(tmp, "wb") as fh:
                if out_file.suffix == ".npy":
                    np.save(fh, next(iter(arrays.values())))
                else:
                    np.savez(fh, **arrays)
        write_with(out_file, save)
        render.warn_line(f"wrote {out_file.path} ({', '.join(arrays)})")
    if json_out:
        doc = {**target.json_fields(), "expression": target.text,
               "output": {n: {"value": render.to_jsonable(target.to_numpy(o)), "shape": list(o.shape)}
                          for n, o in zip(out_names, outs)},
               "jacobian": {}}
        if single:                        # one output: its value itself (named y, or out beside an input y)
            doc["output"] = doc["output"][out_names[0]]
        if out_file is not None:                 # the matrices are in the file, which JSON names
            del doc["jacobian"]
            doc["jacobian_file"] = {"path": str(out_file.path), "arrays": list(arrays)}
        for oname, row in zip(out_names, table if out_file is None else ()):
            for iname, jac in zip(chosen, row):
                key = iname if single else f"{oname}/{iname}"
                doc["jacobian"][key] = render.to_jsonable(jac.numpy())
        if report is not None:
            doc["check"] = render.check_json(report)
        render.dump_json(doc)
    else:
        con = render.console()
        render.backend_line(con, target)
        for w in caught:
            render.warn_once(str(w.message))              # each once (the target ran twice)
        for oname, out, row in zip(out_names, outs, table):
            for iname, jac in zip(chosen, row):
                x = tensors[iname]
                arr = np.asarray(jac.numpy()).reshape(out.numel(), x.numel())
                title = (f"d{oname}/d{iname}: shape {render.shape_text(tuple(out.shape) + tuple(x.shape))} "
                         f"= {oname}{render.shape_text(out.shape)} + {iname}{render.shape_text(x.shape)}, "
                         f"shown as {render.plural(arr.shape[0], 'row')} ({oname} elements) x "
                         f"{render.plural(arr.shape[1], 'column')} ({iname} elements)")
                rows, cols = render.labels(oname, out.shape), render.labels(iname, x.shape)
                con = render.console()
                con.print(f"[bold]{render.esc(title)}[/bold]")
                r_idx = _pick(arr.shape[0], full, 8)
                shown = [i for i in r_idx if i is not None]
                cell = max([len(_num(v)) for v in arr[shown].reshape(-1)] + [len(c) for c in cols] + [3])
                label = max([len(rows[i]) for i in shown] + [3])
                fit = render.columns_that_fit(label, cell, getattr(con, "width", None))
                if full:
                    blocks = [list(range(k, min(k + fit, arr.shape[1]))) for k in range(0, arr.shape[1], fit)]
                else:   # corners: as many columns as the terminal holds, the same count from each end
                    edge = max(1, min(4, fit // 2))
                    blocks = [_pick(arr.shape[1], False, edge)]
                for block in blocks:
                    if len(blocks) > 1:
                        con.print(f"columns {cols[block[0]]} to {cols[block[-1]]}")
                    t = render.table(None, [""] + [cols[j] if j is not None else "..." for j in block])
                    for i in r_idx:
                        if i is None:
                            t.add_row("...", *["..." for _ in block])
                            continue
                        t.add_row(rows[i], *[_num(arr[i, j]) if j is not None else "..." for j in block])
                    render.show(con, t)
                if None in r_idx or any(None in b for b in blocks):
                    render.note(f"large Jacobian: corners shown (rows {rows[0]}.., columns {cols[0]}..); pass --full "
                                f"to see all {arr.size} entries")
        if report is not None:
            render.check_line(con, report)
    if report is not None and not report.passed:
        raise CheckFailed()


class _Partial:
    """A backend (engine/autograd/backend.py) of the chosen inputs only: the others held at their
    values, as the Jacobian's f holds them."""

    def __init__(self, backend, full, wrt_pos):
        self.backend, self.full, self.wrt_pos = backend, full, wrt_pos
        self.differences = None           # the checker's loop over f (its inputs are the chosen ones)

    def _all(self, xs):
        full = [x.detach() for x in self.full]
        for p, x in zip(self.wrt_pos, xs):
            full[p] = x
        return full

    def forward(self, inputs, diff):
        return self.backend.forward(self._all(inputs), [self.wrt_pos[i] for i in diff])

    def backward_grads(self, inputs, diff, cotangents):
        return self.backend.backward_grads(self._all(inputs), [self.wrt_pos[i] for i in diff], cotangents)


def _backend_jacobian(fn, inputs, wrt_pos):
    """[output][input] Jacobians (engine tensors of shape output.shape + input.shape, in the
    output's dtype) from fn's backend: a target on PyTorch, differentiated by PyTorch."""
    import numpy as np

    import engine
    run = fn.backend.forward(inputs, wrt_pos)
    return [[engine.tensor(np.asarray(jac, dtype=o._data.dtype).reshape(o._data.shape + inputs[i]._data.shape))
             for jac, i in zip(row, wrt_pos)] for o, row in zip(run.outputs, run.jacobian())]


def _pick(n, full, edge):
    if full or n <= 2 * edge:
        return list(range(n))
    return list(range(edge)) + [None] + list(range(n - edge, n))


def _num(v):
    from engine.dotgraph import fmt_number
    return fmt_number(v)
