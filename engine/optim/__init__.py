"""torch.optim on the engine: Optimizer, SGD (momentum, dampening, Nesterov, weight decay) and
Adam (weight decay, amsgrad), following PyTorch's update rules step for step."""
import math

import numpy as np

from ..grad_mode import no_grad
from ..nn.parameter import zero_grads


class Optimizer:
    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        for g in groups:
            group = dict(defaults)
            group.update(g)
            group["params"] = list(group["params"])
            self.param_groups.append(group)
        self.state = {}

    def zero_grad(self, set_to_none=True):
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    @staticmethod
    def _direction(group, p, g):
        """The gradient an update follows: negated under maximize, plus weight decay."""
        g = -g if group["maximize"] else g
        return g + group["weight_decay"] * p._data if group["weight_decay"] else g

    def _params(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p, p.grad.numpy(force=True)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..grad_mode import enable_grad
            with enable_grad():
                loss = closure()
        with no_grad():
            self._step()
        return loss


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("Invalid learning rate, momentum or weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _step(self):
        for group, p, g in self._params():
            d = -g if group["maximize"] else g.copy()
            if group["weight_decay"]:
                d = d + group["weight_decay"] * p._data
            if group["momentum"]:
                st = self.state.setdefault(id(p), {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(d, copy=True)
                else:
                    buf *= group["momentum"]
                    buf += (1 - group["dampening"]) * d
                d = d + group["momentum"] * buf if group["nesterov"] else buf
            p._data -= group["lr"] * d
            p._bump()


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        if lr < 0 or eps < 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1:
            raise ValueError("Invalid learning rate, eps or betas")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _step(self):
        for group, p, g in self._params():
            g = self._direction(group, p, g)
            st = self.state.setdefault(id(p), {})
            if not st:
                st["step"] = 0
                st["exp_avg"] = np.zeros_like(p._data)
                st["exp_avg_sq"] = np.zeros_like(p._data)
                if group["amsgrad"]:
                    st["max_exp_avg_sq"] = np.zeros_like(p._data)
            b1, b2 = group["betas"]
            st["step"] += 1
            st["exp_avg"] *= b1
            st["exp_avg"] += (1 - b1) * g
            st["exp_avg_sq"] *= b2
            st["exp_avg_sq"] += (1 - b2) * g * g
            bc1 = 1 - b1 ** st["step"]
            bc2 = 1 - b2 ** st["step"]
            v = st["exp_avg_sq"]
            if group["amsgrad"]:
                np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
                v = st["max_exp_avg_sq"]
            denom = np.sqrt(v) / math.sqrt(bc2) + group["eps"]
            p._data -= (group["lr"] / bc1) * st["exp_avg"] / denom
            p._bump()


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr * weight_decay * p before the Adam step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr, betas, eps, 0.0, amsgrad, maximize)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = weight_decay

    def _step(self):
        for group, p, _ in list(self._params()):
            wd = group.get("decoupled_weight_decay", 0.0)
            if wd:
                p._data *= 1 - group["lr"] * wd
        super()._step()


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False):
        if lr < 0 or eps < 0 or momentum < 0 or alpha < 0:
            raise ValueError("Invalid learning rate, eps, momentum or alpha value")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _step(self):
        for group, p, g in self._params():
            g = self._direction(group, p, g)
            st = self.state.setdefault(id(p), {})
            if not st:
                st["step"] = 0
                st["square_avg"] = np.zeros_like(p._data)
                if group["momentum"]:
                    st["momentum_buffer"] = np.zeros_like(p._data)
                if group["centered"]:
                    st["grad_avg"] = np.zeros_like(p._data)
            st["step"] += 1
            a = group["alpha"]
            st["square_avg"] *= a
            st["square_avg"] += (1 - a) * g * g
            if group["centered"]:
                st["grad_avg"] *= a
                st["grad_avg"] += (1 - a) * g
                avg = np.sqrt(st["square_avg"] - st["grad_avg"] ** 2) + group["eps"]
            else:
                avg = np.sqrt(st["square_avg"]) + group["eps"]
            if group["momentum"]:
                buf = st["momentum_buffer"]
                buf *= group["momentum"]
                buf += g / avg
                p._data -= group["lr"] * buf
            else:
                p._data -= group["lr"] * g / avg
            p._bump()


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 maximize=False):
        if lr < 0 or lr_decay < 0 or weight_decay < 0 or eps < 0:
            raise ValueError("Invalid learning rate, lr_decay, weight_decay or eps value")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))

    def _step(self):
        for group, p, g in self._params():
            g = self._direction(group, p, g)
            st = self.state.setdefault(id(p), {})
            if not st:
                st["step"] = 0
                st["sum"] = np.full_like(p._data, group["initial_accumulator_value"])
            st["step"] += 1
            clr = group["lr"] / (1 + (st["step"] - 1) * group["lr_decay"])
            st["sum"] += g * g
            p._data -= clr * g / (np.sqrt(st["sum"]) + group["eps"])
            p._bump()


from . import lr_scheduler  # noqa: E402,F401
