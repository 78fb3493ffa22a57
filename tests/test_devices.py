"""PyTorch's device boilerplate on the engine: it runs as on a machine without an accelerator,
and asking for one is one clear error (checked against PyTorch where it is installed)."""
import pytest

import engine


def test_the_usual_device_line_runs():
    d = engine.device("cuda" if engine.cuda.is_available() else "cpu")
    assert str(d) == "cpu" and repr(d) == "device(type='cpu')" and d == "cpu"
    x = engine.zeros(2, 3, device=d)
    assert x.device == d and x.to(d) is x and x.cpu() is x
    assert engine.ones(2, device="cpu").tolist() == [1.0, 1.0]
    assert engine.randn(size=(2, 3)).shape == (2, 3) and engine.tensor([1.0], device="cpu:0").device == "cpu"
    assert not engine.backends.mps.is_available() and not engine.accelerator.is_available()
    assert engine.cuda.device_count() == 0
    engine.set_default_device("cpu")
    assert engine.get_default_device() == "cpu"


@pytest.mark.parametrize("call", [
    lambda: engine.zeros(2, device="cuda"), lambda: engine.tensor([1.0], device="cuda:0"),
    lambda: engine.ones(2).to("cuda"), lambda: engine.ones(2).to(engine.device("cuda")),
    lambda: engine.ones(2).cuda(), lambda: engine.set_default_device("mps"),
    lambda: engine.randn(2, device=engine.device("cuda", 1)),
])
def test_asking_for_an_accelerator_is_one_clear_error(call):
    with pytest.raises(RuntimeError, match="the engine computes on the CPU only: device '(cuda|mps)"):
        call()


def test_to_takes_devices_dtypes_and_tensors_in_any_order():
    x = engine.ones(2)
    assert x.to("cpu", engine.float32).dtype == engine.float32
    assert x.to(engine.float32, device="cpu").dtype == engine.float32
    assert x.to(dtype=engine.float32).dtype == engine.float32
    assert x.to(engine.ones(1, dtype=engine.float32)).dtype == engine.float32
    assert x.to("cpu") is x


def test_the_new_unary_ops_and_t_match_pytorch_names():
    x = engine.tensor([[0.1, 0.2], [0.3, 0.4]], requires_grad=True)
    names = [f(x).grad_fn.name() for f in (lambda v: v.t(), lambda v: v.square(), lambda v: v.floor(),
                                           lambda v: v.asin(), lambda v: v.rsqrt(), lambda v: v.expm1())]
    assert names == ["TBackward0", "PowBackward0", "FloorBackward0", "AsinBackward0", "RsqrtBackward0",
                     "Expm1Backward0"]
    with pytest.raises(RuntimeError, match="t\\(\\) expects a tensor with <= 2 dimensions, but self is 3D"):
        engine.ones(2, 2, 2).t()
