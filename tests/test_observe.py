"""engine.observe: the one API for what watches the forward (locate, explain, the kink watch).

Every site that makes a node hands it to the observers from one place (ops/_core.observed): the
binary operators, apply1, apply's general path, multi-output ops, the pieces of chunk/split, and
custom Function applications. The graph's own nodes (engine.graph.walk) are the independent list
the observed ones must equal.
"""
import os
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

import engine
from engine.graph import AccumulateGrad, node_name, walk
from engine.observe import KinkWatch, Observer, active, observe

runner = CliRunner()


class Seen(Observer):
    def __init__(self):
        self.nodes, self.inputs, self.outputs = [], [], []

    def on_node(self, node, inputs, attrs, outputs):
        self.nodes.append(node)
        self.inputs.append(inputs)
        self.outputs.append(outputs)


class Twice(engine.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


def every_site(x, y):
    a = x * y                               # the binary operator
    b = a.exp()                             # apply1 (a unary method)
    c = engine.where(b > 1, b, a)           # apply's general path (three inputs)
    d, e = engine.max(c, dim=0)             # a multi-output op
    p, q = engine.chunk(d, 2)               # structured pieces
    r = Twice.apply(p)                      # a custom Function
    return (r.sum() + q.sum()) * 1.0


def test_every_node_made_reaches_the_observer_once_in_forward_order():
    x = engine.randn(4, 6, dtype=engine.float64, requires_grad=True)
    y = engine.randn(4, 6, dtype=engine.float64, requires_grad=True)
    with observe(Seen()) as seen:
        out = every_site(x, y)
    in_graph = {n for n in walk([out.grad_fn]) if not isinstance(n, AccumulateGrad)}
    assert set(seen.nodes) == in_graph and len(seen.nodes) == len(in_graph)
    names = [node_name(n) for n in seen.nodes]
    assert names == ["MulBackward0", "ExpBackward0", "WhereBackward0", "MaxBackward0", "SplitBackward0",
                     "TwiceBackward", "SumBackward0", "SumBackward0", "AddBackward0", "MulBackward0"]
    # what each forward received and made: the operator's inputs, the Function's output
    k = names.index("MulBackward0")
    np.testing.assert_array_equal(seen.inputs[k][0], x.detach().numpy())
    np.testing.assert_array_equal(seen.outputs[k], (x * y).detach().numpy())
    t = names.index("TwiceBackward")
    np.testing.assert_allclose(seen.outputs[t][0], 2 * seen.inputs[t][0].numpy())


def test_no_graph_no_node_but_every_op_reaches_an_op_observer():
    class Ops(Observer):
        ops = True

        def __init__(self):
            self.ops_seen = []

        def on_op(self, op, inputs, attrs):
            self.ops_seen.append(op.name)
    x = engine.randn(3, dtype=engine.float64)
    with observe(Ops()) as o, observe(Seen()) as seen:
        (x.abs() * 2).sin()
    assert o.ops_seen == ["abs", "mul", "sin"] and seen.nodes == []


def test_observers_stack_and_each_block_restores_even_when_the_forward_raises():
    x = engine.randn(3, dtype=engine.float64, requires_grad=True)
    with observe(Seen()) as outer:
        x * x
        with pytest.raises(RuntimeError):
            with observe(Seen()) as inner:
                x.exp()
                raise RuntimeError("the user's forward failed")
        x.sin()
    x.cos()                                   # after both blocks: nobody sees it
    assert [node_name(n) for n in outer.nodes] == ["MulBackward0", "ExpBackward0", "SinBackward0"]
    assert [node_name(n) for n in inner.nodes] == ["ExpBackward0"]
    assert engine.grad_mode.STATE.observers == () and engine.grad_mode.OFF_DEFAULT[0] == 0


def test_an_observer_sees_its_own_thread_only():
    x = engine.randn(3, dtype=engine.float64, requires_grad=True)
    other = []

    def work():
        other.append(x * x)
    with observe(Seen()) as seen:
        t = threading.Thread(target=work)
        t.start()
        t.join()
        x.exp()
    assert [node_name(n) for n in seen.nodes] == ["ExpBackward0"] and other


def test_kink_watch_names_the_op_and_the_first_element_within_eps_and_active_finds_it():
    x = engine.tensor([0.5, 1e-9, -2.0, 0.0], dtype=engine.float64, requires_grad=True)
    assert active(KinkWatch) is None
    with observe(KinkWatch(1e-6)) as watch:
        assert active(KinkWatch) is watch
        engine.relu(x).sum()
        (x + 3).abs()                          # far from abs's kink: nothing
    assert watch.found == [("relu", (1,))]


def test_anomaly_mode_saved_hooks_and_an_observer_together_on_every_site():
    packed = []
    x = engine.randn(4, 6, dtype=engine.float64, requires_grad=True)
    y = engine.randn(4, 6, dtype=engine.float64, requires_grad=True)
    with engine.autograd.detect_anomaly(), observe(Seen()) as seen, \
            engine.autograd.graph.saved_tensors_hooks(lambda t: packed.append(1) or t, lambda t: t):
        out = every_site(x, y)
    out.backward()
    plain_x, plain_y = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    every_site(x, y).backward()
    np.testing.assert_allclose(plain_x.numpy(), x.grad.numpy())
    np.testing.assert_allclose(plain_y.numpy(), y.grad.numpy())
    assert packed and all(n._trace for n in seen.nodes)       # each node has its forward's traceback
    assert all("every_site" in "".join(n._trace) for n in seen.nodes)


def test_a_relative_target_path_says_where_in_each_working_folder_of_one_process(tmp_path, monkeypatch):
    """Two folders, each with its own net.py, checked by the same relative name in one process:
    each says where its own node was made (a cache of resolved names once kept the first folder's)."""
    from cli.app import app
    import json
    for k, line in ((1, 4), (2, 6)):
        d = tmp_path / f"run{k}"
        d.mkdir()
        (d / "net.py").write_text("import engine\n" + "\n" * (line - 3) +
                                  "def f(x):\n    return engine.sin(x).sum()\n")
        monkeypatch.chdir(d)
        r = runner.invoke(app, ["check", "net.py", "--x", "1,2", "--locate", "--json", "--backend", "engine"])
        doc = json.loads(r.stdout)
        assert r.exit_code == 0, r.output
        assert [c["where"] for c in doc["locate"] if c["node"] == "SinBackward0"] == [f"net.py:{line}"], doc["locate"]


def test_an_error_in_a_helper_module_beside_the_target_shows_both_files_frames(tmp_path, monkeypatch):
    """The traceback the user sees is read from the error itself: the target's frames, and inner to
    them the frames of the user's helper module -- not the tool's, not the engine's."""
    from cli.app import app
    (tmp_path / "helper.py").write_text("def scale(x):\n    raise ValueError('bad scale')\n")
    (tmp_path / "t.py").write_text("import engine\nimport helper\n\ndef f(x):\n    return helper.scale(x).sum()\n")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["grad", "t.py", "--x", "1,2"])
    assert r.exit_code == 2
    err = r.stderr
    assert "t.py" in err and "helper.py" in err and "ValueError: bad scale" in err
    assert os.sep + "engine" + os.sep not in err and os.sep + "cli" + os.sep not in err


def test_two_programs_each_say_which_part_of_their_own_text_runs():
    from expressions import compile_expression
    a = compile_expression("sin(x) * 2", ["x"])
    b = compile_expression("exp(x)", ["x"])
    spans = []

    class Spans(Observer):
        def on_node(self, node, inputs, attrs, outputs):
            spans.append((node_name(node), a.running_span(), b.running_span()))
    x = engine.tensor([1.0, 2.0], dtype=engine.float64, requires_grad=True)
    with observe(Spans()):
        a.run({"x": x})
    assert spans == [("SinBackward0", (0, 6), None), ("MulBackward0", (0, 10), None)]
