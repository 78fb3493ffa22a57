"""`autograd graph`: the backward graph as DOT (or SVG/PNG/PDF via Graphviz, or Mermaid)."""
import typer

from .. import options as o
from ..errors import CliError


def graph_command(
    ctx: typer.Context,
    target: o.Target,
    output: str = typer.Option(None, "-o", "--output", help="FILE: .dot/.gv (DOT), .svg/.png/.pdf (needs Graphviz), .html (an interactive page; needs Graphviz), .mmd (Mermaid)"),
    show_values: bool = typer.Option(False, "--show-values", help="Put leaf and output values on their nodes"),
    show_grad: bool = typer.Option(False, "--show-grad", help="Run backward and put each leaf's gradient on it"),
    retain_grad: bool = typer.Option(False, "--retain-grad", help="With --show-grad: also every intermediate gradient"),
    grad_output: str = typer.Option(None, "--grad-output", help="With --show-grad: the gradient to seed a non-scalar "
                                    "output with (VALUES; default ones, said on stderr)"),
    show_saved: bool = typer.Option(False, "--show-saved", help="Show what each node saved for backward"),
    forward: bool = typer.Option(False, "--forward", help="Label nodes with the forward op too (mul -> MulBackward0)"),
    rankdir: str = typer.Option("TB", "--rankdir", help="TB (top to bottom) or LR (left to right), any case"),
    max_nodes: int = typer.Option(1000, "--max-nodes", min=1, help="Collapse the graph beyond this many nodes"),
    dot_timeout: float = typer.Option(60.0, "--dot-timeout", min=0.1, help="Seconds Graphviz may take to render before it is stopped"),
    wrt: o.Wrt = None,
    func: o.Func = "f",
    backend: o.Backend = "auto",
    seed: o.Seed = 0,
    dtype: o.DType = "",
    debug: o.Debug = False,
):
    """Export the backward graph of an expression or a .py function.

    Example: autograd graph "sum(w*x)" --w 1,2 --x 3,4 -o graph.svg
    """
    from ..boundary import run
    rankdir = rankdir.upper()
    if rankdir not in ("TB", "LR"):
        raise typer.BadParameter("--rankdir must be TB or LR")
    run(ctx, debug, lambda values: _graph(target, values, output, show_values, show_grad, retain_grad,
                                          show_saved, forward, rankdir, max_nodes, wrt, func, seed, dtype,
                                          dot_timeout, backend=backend, grad_output=grad_output))


def _graph(target_text, values, output, show_values, show_grad, retain_grad, show_saved, forward, rankdir,
           max_nodes, wrt, func, seed, dtype, dot_timeout, backend="auto", grad_output=None):
    from ..options import check_dtype
    from ..outputs import prepare, write_graph
    from ..targets import build_inputs, load_target
    check_dtype(dtype)
    output = prepare(output)                  # before any work: a bad path or no Graphviz is said at once
    if retain_grad and not show_grad:
        raise CliError("--retain-grad only makes sense with --show-grad")
    if grad_output is not None and not show_grad:
        raise CliError("--grad-output seeds the backward of --show-grad: add --show-grad")
    target = load_target(target_text, func, given=values, backend=backend)
    tensors, chosen = build_inputs(target, values, wrt=wrt, dtype=dtype, seed=seed)
    outs, single = target.call(tensors)
    node_grads = None
    if show_grad:
        node_grads = _backward(target, outs, retain_grad, _seeds(target, outs, grad_output))
    write_graph(outs, tensors, output, view=target.graph_view(), rankdir=rankdir, timeout=dot_timeout, show_values=show_values, show_grad=show_grad,
                show_saved=show_saved, forward=forward, max_nodes=max_nodes, node_grads=node_grads,
                output_names=["output"] if single else [f"output{k}" for k in range(len(outs))])
    if output is not None:                    # stdout stays empty: say where the graph went
        from .. import render
        render.warn_line(f"wrote {output.path}")


def _seeds(target, outs, grad_output):
    """The gradients backward starts from: --grad-output for one output; else ones, and a
    non-scalar output seeded so is said (its .grad values are a vector-Jacobian product with ones)."""
    from .. import render
    lib = target.lib
    if grad_output is not None:
        from expressions import parse_value
        if len(outs) != 1:
            raise CliError(f"--grad-output seeds one output; this target returns {len(outs)}")
        v = parse_value(grad_output, name="grad-output")
        if tuple(v.shape) != tuple(outs[0].shape):
            raise CliError(f"--grad-output has shape {render.shape_text(v.shape)} but the output has shape "
                           f"{render.shape_text(outs[0].shape)}")
        return [lib.tensor(v).to(outs[0].dtype)]
    wide = [k for k, o in enumerate(outs) if o.numel() != 1 and o.grad_fn is not None]
    if wide:
        which = "the output" if len(outs) == 1 else "output " + ", ".join(str(k) for k in wide)
        render.warn_line(f"note: {which} is not a scalar (shape {render.shape_text(outs[wide[0]].shape)}); "
                         "--show-grad seeded its backward with ones, so the gradients shown are those of its sum "
                         "(pass --grad-output VALUES to choose the vector)")
    return [lib.ones_like(o) for o in outs]


def _backward(target, outs, retain_grad, seeds):
    """Run backward from the seeds and, with --retain-grad, keep the gradient into every node."""
    from engine.dotgraph import EngineView
    view = target.graph_view() or EngineView
    lib = target.lib
    seen = {}
    handles = []
    if retain_grad:
        for n in view.walk([view.root(o) for o in outs]):
            if view.variable(n) is None:
                handles.append(n.register_prehook(lambda gs, n=n: seen.__setitem__(
                    n, [None if g is None else target.to_numpy(g) for g in gs])))
    live = [(o, s) for o, s in zip(outs, seeds) if o.grad_fn is not None]
    if live:
        with target.autograd_errors():
            lib.autograd.backward([o for o, _ in live], [s for _, s in live], retain_graph=True)
    for h in handles:
        h.remove()
    return seen
