import math

import numpy as np
import pytest
import torch

from adamdist.optim import FairseqAdam


def _grads(steps, n=64, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    # gradients spanning the scale of eps, where the two placements of eps disagree
    return [torch.randn(n, generator=gen, dtype=dtype) * 10.0 ** torch.empty(n, dtype=dtype).uniform_(-10, 0, generator=gen)
            for _ in range(steps)]


def _trajectory(make, grads, eps_of_step=None):
    p = torch.nn.Parameter(torch.linspace(-1, 1, grads[0].numel(), dtype=grads[0].dtype))
    opt = make([p])
    out = []
    for t, g in enumerate(grads, start=1):
        if eps_of_step is not None:
            for group in opt.param_groups:
                group["eps"] = eps_of_step(t)
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out).numpy()


@pytest.mark.parametrize("betas", [(0.9, 0.98), (0.0, 0.999)])
@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_equals_torch_adam_with_eps_divided_by_the_root_bias_correction(betas, decay):
    """The second route: torch.optim.Adam(W) with eps_t = eps / sqrt(1 - beta2^t) set before every step."""
    lr, eps, grads = 1e-2, 1e-6, _grads(12)
    ours = _trajectory(lambda p: FairseqAdam(p, lr=lr, betas=betas, eps=eps, weight_decay=decay), grads)
    cls = torch.optim.AdamW if decay else torch.optim.Adam
    theirs = _trajectory(lambda p: cls(p, lr=lr, betas=betas, eps=eps, weight_decay=decay, foreach=False), grads,
                         eps_of_step=lambda t: eps / math.sqrt(1 - betas[1] ** t))
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)
    # and it is not torch's Adam with eps fixed: coordinates with gradients near eps see the difference
    plain = _trajectory(lambda p: cls(p, lr=lr, betas=betas, eps=eps, weight_decay=decay, foreach=False), grads)
    assert np.abs(ours - plain).max() > 1e-4


def test_follows_the_formula_step_by_step():
    """A NumPy transcription of m, v and theta -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)."""
    lr, (b1, b2), eps, decay, grads = 3e-3, (0.8, 0.95), 1e-4, 0.01, _grads(6, seed=1)
    ours = _trajectory(lambda p: FairseqAdam(p, lr=lr, betas=(b1, b2), eps=eps, weight_decay=decay), grads)
    theta = np.linspace(-1, 1, grads[0].numel())
    m = v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = g.numpy()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta * (1 - decay * lr) - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(ours[t - 1], theta, rtol=1e-12, atol=1e-15)


def test_skips_parameters_without_gradient_and_returns_the_closures_loss():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = FairseqAdam([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * 2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == 6.0
    assert torch.equal(b.detach(), torch.ones(3)) and b not in opt.state
    assert opt.state[a]["step"] == 1 and (a.detach() < 1).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1.0), "lr"), (dict(betas=(1.0, 0.9)), r"betas\[0\]"), (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(betas=(0.9,)), "pair"), (dict(eps=-1e-8), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
    (dict(lr=float("nan")), "lr"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FairseqAdam([torch.nn.Parameter(torch.ones(2))], **kwargs)
    with pytest.raises(TypeError, match="lr"):
        FairseqAdam([torch.nn.Parameter(torch.ones(2))], lr=torch.tensor(0.1))
