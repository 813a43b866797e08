r"""Optimizers as other libraries ship them, where they differ from ``torch.optim``.

The paper's transformer experiment (section 5.3) ran fairseq, whose Adam puts
:math:`\epsilon` in a different place from :class:`torch.optim.Adam` and from
the paper's own eq. (3)-(4). With :math:`c_1 = 1 - \beta_1^t`,
:math:`c_2 = 1 - \beta_2^t` and the usual moving averages
:math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`,
:math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`:

.. math::

    \text{torch, eq. (3)-(4):}\quad
    \theta_t = \theta_{t-1} - \eta\,\frac{m_t / c_1}{\sqrt{v_t / c_2} + \epsilon},
    \qquad
    \text{fairseq:}\quad
    \theta_t = \theta_{t-1} - \eta\,\frac{\sqrt{c_2}}{c_1}\,\frac{m_t}{\sqrt{v_t} + \epsilon}.

Dividing numerator and denominator of the second by :math:`\sqrt{c_2}` shows
that fairseq's step is torch's with :math:`\epsilon` replaced by
:math:`\epsilon_t = \epsilon / \sqrt{1 - \beta_2^t}`: at the first step with
:math:`\beta_2 = 0.98` that is :math:`7.1\,\epsilon`, decaying to
:math:`\epsilon` as :math:`t` grows. Only coordinates whose gradient is within
a few :math:`\epsilon_t` of zero notice, but in a transformer many are.
"""

from __future__ import annotations

import math

from ._optional import require

torch = require("torch", "torch", __name__)

from ._validation import check_range  # noqa: E402

__all__ = ["FairseqAdam"]


class FairseqAdam(torch.optim.Optimizer):
    r"""Adam as fairseq 0.12 runs it (``fairseq.optim.adam.Adam``, its pure-PyTorch path).

    The step, per parameter, in fairseq's order of operations (so float32
    results round as fairseq's do):

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) g,\quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2,\quad
        \theta \leftarrow \theta - \eta\,\frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
        \frac{m}{\sqrt v + \epsilon},

    preceded, with weight decay :math:`\lambda`, by the decoupled
    :math:`\theta \leftarrow \theta - \lambda\eta\,\theta` (as
    :class:`torch.optim.AdamW`). Equivalent to :class:`torch.optim.Adam`
    with :math:`\epsilon_t = \epsilon/\sqrt{1-\beta_2^t}` (see the module
    notes); the difference matters for coordinates with gradients near
    :math:`\epsilon`.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups, as for any ``torch.optim`` optimizer.
    lr : float
        Learning rate :math:`\eta \ge 0` (a Python float: fairseq's schedulers set floats).
    betas : (float, float)
        :math:`\beta_1, \beta_2 \in [0, 1)`.
    eps : float
        :math:`\epsilon \ge 0`, added to :math:`\sqrt{v}` before the bias correction.
    weight_decay : float
        Decoupled weight decay :math:`\lambda \ge 0`.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if isinstance(lr, torch.Tensor):
            raise TypeError("lr must be a Python float (fairseq's Adam has no tensor learning rates)")
        check_range(lr, "lr", low=0.0)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_range(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True)
        check_range(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True)
        check_range(eps, "eps", low=0.0)
        check_range(weight_decay, "weight_decay", low=0.0)
        super().__init__(params, dict(lr=float(lr), betas=(float(betas[0]), float(betas[1])), eps=float(eps),
                                      weight_decay=float(weight_decay)))

    @torch.no_grad()
    def step(self, closure=None):
        """One optimization step; ``closure`` re-evaluates the loss, as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("FairseqAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                if decay != 0:
                    p.add_(p, alpha=-decay * lr)
                p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss
