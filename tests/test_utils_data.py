"""torch.utils.data on the engine (engine/utils/data.py) and random_(): a seeded tutorial that
shuffles with a DataLoader, splits with random_split or draws random_() gets PyTorch's numbers,
in PyTorch's order (each DataLoader iteration draws a base seed, a shuffling sampler a seed of its
own and a permutation); batches collate as PyTorch's default collate does. PyTorch is the oracle;
the collation and lengths are also checked against their definitions."""
import numpy as np
import pytest

import engine
from engine.utils.data import DataLoader, TensorDataset, default_collate, random_split


def _torch():
    return pytest.importorskip("torch")


def _epochs(m, seed, **kw):
    m.manual_seed(seed)
    data = m.utils.data if m is not engine else engine.utils.data
    ds = data.TensorDataset(m.arange(22.).reshape(11, 2), m.arange(11))
    out = []
    for _ in range(3):                      # three epochs: the draws stay in step
        out.append([yb.tolist() for _, yb in data.DataLoader(ds, **kw)])
    out.append(m.randn(3).tolist())         # and what comes after them too
    return out


@pytest.mark.parametrize("kw", [dict(batch_size=4, shuffle=True), dict(batch_size=3, shuffle=True, drop_last=True),
                                dict(batch_size=5), dict(batch_size=1, shuffle=True)])
@pytest.mark.parametrize("seed", [0, 7, 2024])
def test_shuffled_batches_are_pytorchs(kw, seed):
    import engine.utils.data  # noqa: F401
    torch = _torch()
    import torch.utils.data  # noqa: F401
    ours, theirs = _epochs(engine, seed, **kw), _epochs(torch, seed, **kw)
    assert ours[:3] == theirs[:3]
    np.testing.assert_allclose(ours[3], theirs[3], rtol=1e-6)


def test_random_split_and_generator_are_pytorchs():
    torch = _torch()
    import torch.utils.data as tdata
    res = []
    for m, data in ((engine, engine.utils.data), (torch, tdata)):
        m.manual_seed(3)
        a, b = data.random_split(range(10), [0.7, 0.3])
        c, d = data.random_split(range(9), [4, 5], generator=m.Generator().manual_seed(1))
        g = m.Generator().manual_seed(42)
        loader = [x.tolist() for x in data.DataLoader(m.arange(6), batch_size=2, shuffle=True, generator=g)]
        res.append((list(a), list(b), list(c), list(d), loader))
    assert res[0] == res[1]


@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "int8", "uint8", "bool", "float32"])
def test_random_without_bounds_is_pytorchs(dtype):
    """random_() draws over the dtype's whole range (it raised 'from=0 >= to=0')."""
    torch = _torch()
    res = []
    for m in (engine, torch):
        m.manual_seed(11)
        res.append(m.empty(7, dtype=getattr(m, "bool" if dtype == "bool" else dtype)).random_().tolist())
    assert res[0] == res[1]


def test_collate_and_lengths_by_definition():
    ds = TensorDataset(engine.arange(10.).reshape(5, 2), engine.arange(5))
    assert len(DataLoader(ds, batch_size=2)) == 3 and len(DataLoader(ds, batch_size=2, drop_last=True)) == 2
    xb, yb = next(iter(DataLoader(ds, batch_size=2)))
    np.testing.assert_array_equal(xb.numpy(), [[0., 1.], [2., 3.]])
    batch = default_collate([{"x": 1.5, "n": 2, "s": "a"}, {"x": -0.5, "n": 3, "s": "b"}])
    assert batch["x"].dtype == engine.float64 and batch["n"].dtype == engine.int64 and batch["s"] == ["a", "b"]
    assert isinstance(default_collate([(engine.zeros(2), 1), (engine.ones(2), 2)]), list)
    parts = random_split(ds, [3, 2])
    assert sorted(i for p in parts for i in p.indices) == list(range(5))
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [3, 3])


def test_torch_utils_data_is_the_engines_while_a_target_runs(tmp_path):
    import runpy

    from cli.backends import torch_on_engine
    p = tmp_path / "t.py"
    p.write_text("import torch\nfrom torch.utils.data import DataLoader\nimport torch.utils.data as d\n"
                 "import torch.autograd.grad_mode\nfrom torch.nn.parameter import Parameter\n"
                 "RESULT = (DataLoader, d.TensorDataset, torch.autograd.grad_mode.no_grad, Parameter)\n")
    with torch_on_engine(True):
        got = runpy.run_path(str(p))["RESULT"]
    assert got == (DataLoader, TensorDataset, engine.no_grad, engine.nn.Parameter)


def test_benchmark_timer_prints_as_pytorchs():
    """torch.utils.benchmark.Timer (PyTorch's jacobians tutorial times jacrev with it): the same
    lines as PyTorch's Measurement but the time itself, which is this machine's."""
    torch = _torch()
    from torch.utils import benchmark as tb

    from engine.utils import benchmark as eb
    import re
    shown = []
    for m, b in ((engine, eb), (torch, tb)):
        t = b.Timer(stmt="x.sin()", setup="y = 1", globals={"x": m.ones(10)}, label="L", sub_label="S",
                    description="D")
        meas = t.timeit(50)
        assert len(meas.times) == 1 and meas.number_per_run == 50 and 0 < meas.mean == meas.median
        lines = re.sub(r" at 0x[0-9a-f]+", "", repr(meas)).splitlines()
        assert re.fullmatch(r"  \d+\.\d\d (s|ms|us|ns)", lines[4]), lines
        shown.append(lines[:4] + lines[5:])
    assert shown[0] == shown[1]
