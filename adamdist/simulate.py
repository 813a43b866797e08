r"""Monte Carlo of adaptive-gradient recursions on synthetic gradient streams.

The paper's closed forms (:mod:`adamdist.theory`) hold for i.i.d. Gaussian
gradients and a simple-average preconditioner. Section 6 of the paper asks what
happens otherwise -- a gradient variance or mean that changes with time, heavy
tails -- and answers by simulation. This module is that simulation, for
:math:`N` independent scalar parameters (one per coordinate) over :math:`T`
optimizer steps.

At every step :math:`t = 1, \dots, T` (the paper's :math:`m`) each coordinate
draws a gradient :math:`g_t` from a *gradient model*, the chosen optimizer
advances its state, and the update

.. math::

    u_t = \frac{\theta_t - \theta_{t-1}}{\lambda}

(the paper's :math:`\Delta\theta`, Section 2) is summarised by
:class:`adamdist.results.StatsAccumulator`: histogram, moments, a fixed random
subset of raw values, non-finite count. Only the optimizer state (a few vectors
of length :math:`N`) and the per-step summaries are kept, so memory is
:math:`O(N + T \cdot \mathrm{bins})`, never :math:`O(N T)`.

:math:`\theta` itself is never formed: :math:`u_t` is exactly what the
optimizer would subtract from the parameters, divided by the learning rate
:math:`\lambda`. It does not depend on :math:`\lambda`, and computing it
directly avoids the rounding of :math:`\theta_t - \theta_{t-1}`.

Optimizers (``optimizer=``)
---------------------------
``"adam"``
    PyTorch's :class:`torch.optim.Adam` (Kingma & Ba): with
    :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`,
    :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`,

    .. math:: u_t = -\frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}.

``"laprop"``
    The paper's eqs. 1-4, where the preconditioner acts *inside* the momentum
    (this ordering is known as LaProp): :math:`n_t` as :math:`v_t` above (eq. 2),

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) \frac{g_t}{\sqrt{n_t / c_n} + \epsilon}
        \quad\text{(eq. 3)},\qquad
        u_t = -\frac{m_t}{c_m}\quad\text{(eq. 4)},

    with :math:`c_n = 1-\beta_2^t`, :math:`c_m = 1-\beta_1^t`. With
    :math:`\beta_1 = 0` it coincides with ``"adam"``.
``"fairseq_adam"``
    fairseq's Adam (:class:`adamdist.optim.FairseqAdam`, what the paper's
    transformer ran): :math:`\epsilon` is added before the bias correction,

    .. math:: u_t = -\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t} + \epsilon},

    which is ``"adam"`` with :math:`\epsilon_t = \epsilon/\sqrt{1-\beta_2^t}`.
``"rmsprop"``
    :class:`torch.optim.RMSprop` with ``alpha = beta2`` and
    ``momentum = beta1`` (PyTorch's convention: the buffer is
    :math:`b_t = \beta_1 b_{t-1} + g_t/(\sqrt{v_t}+\epsilon)`, no
    :math:`1-\beta_1` factor and no bias correction).
``"adagrad"``
    :class:`torch.optim.Adagrad` (no learning-rate decay, zero initial
    accumulator): :math:`u_t = -g_t / (\sqrt{\sum_{i\le t} g_i^2} + \epsilon)`.
``"average"``
    The preconditioner of the paper's theory, a simple average
    :math:`n_t = \frac1t \sum_{i \le t} g_i^2` (the :math:`\beta \to 1` limit
    of eq. 13 that Sections 3-4 analyse), optionally with Adam's bias-corrected
    momentum. With :math:`\beta_1 = 0`, :math:`\epsilon = 0` and i.i.d.
    Gaussian gradients, :math:`-u_t` is the :math:`U_m` of Theorem 1 and has the
    law :func:`adamdist.theory.update_distribution` ``(m=t)``.

Gradient models (``gradients=``)
--------------------------------
:class:`Normal` (mean and standard deviation may be functions of the step --
the paper's Figures 5-6), :class:`StudentT`, :class:`Cauchy` (Figure 7),
:class:`Mixture`, :func:`sparse_spikes`, :class:`Sparse` (exact zeros, as
behind an embedding or a dead ReLU) and :class:`Persistent` (a per-coordinate
component that lasts over steps). Any object following the
:class:`GradientModel` protocol, or a plain callable
``f(step, n, generator, device, dtype) -> Tensor`` of shape ``(n,)``, works too.

Reproducibility: all randomness comes from one :class:`torch.Generator`
seeded with ``seed``; the same seed, device, dtype and kernel give
bit-identical results. The same code runs on CPU and CUDA.

Two routes, one recursion. On CUDA (and on a CPU without a C compiler) each
step is a handful of in-place torch operations in ``torch.optim``'s order, so
the updates are bit-identical to ``torch.optim``'s. On the CPU the step runs in
adamdist's compiled kernel (:mod:`adamdist._native`): one pass over memory
instead of eight, the same operations in the same order, so the same values to
float rounding (a last-bit difference in about one coordinate in six, because
torch's vectorised CPU square root is not correctly rounded). The statistics
of every step come from one pass of the kernel too. ``metadata["kernel"]``
says which route ran (``"compiled"`` or ``"torch"``); ``ADAMDIST_NATIVE=0``
forces the torch route.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ._optional import require

torch = require("torch", "torch", __name__)

from . import _native  # noqa: E402
from ._validation import check_int, check_memory, check_range, check_seed  # noqa: E402
from .results import StatsAccumulator, UpdateStats, default_edges  # noqa: E402

if TYPE_CHECKING:  # pandas is imported where a frame is built
    import pandas as pd

__all__ = [
    "run",
    "GradientModel",
    "Normal",
    "StudentT",
    "Cauchy",
    "Mixture",
    "sparse_spikes",
    "Sparse",
    "Persistent",
    "Replay",
    "TimeShuffled",
    "Bootstrap",
    "SparseStudentT",
    "OPTIMIZERS",
    "count_modes",
    "mode_indices",
    "mode_table",
]


# --------------------------------------------------------------------------
# gradient models
# --------------------------------------------------------------------------

class GradientModel:
    """Base class (and protocol) of gradient models.

    A gradient model draws the gradients of all ``n`` coordinates at one step.
    Subclasses implement :meth:`sample` and, ideally, :meth:`describe`.
    Anything with a ``sample`` method of this signature is accepted by
    :func:`run`, and so is a plain callable
    ``f(step, n, generator, device, dtype) -> Tensor``.

    The contract:

    * ``step`` is the 1-based optimizer step (the paper's :math:`m`);
    * the result is a tensor of shape ``(n,)`` with the given ``dtype`` on the
      given ``device``;
    * all randomness comes from ``generator`` (pass it to every
      ``torch.randn``/``normal_``/... call), so that a seed fixes the stream;
    * ``out``, when given, is a preallocated tensor of shape ``(n,)`` that the
      model may fill and return instead of allocating (the engine passes it to
      subclasses of this class only; it saves one allocation per step).
    """

    def sample(self, step: int, n: int, generator, device, dtype, out=None):
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-serialisable description, stored in the run's metadata."""
        return {"model": type(self).__name__}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "model")
        return f"{type(self).__name__}({args})"


def _schedule(value, name: str, positive: bool):
    """Turn a constant or a callable of the step into a checked callable."""
    if callable(value):
        def f(step):
            v = value(step)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{name}({step}) must return a real number, got {type(v).__name__}") from None
            if not math.isfinite(v) or (positive and v <= 0):
                allowed = "(0, inf)" if positive else "(-inf, inf)"
                raise ValueError(f"{name}({step}) must lie in {allowed}, got {v!r}")
            return v
        return f
    if positive:
        v = float(check_range(value, name, 0.0, np.inf, low_open=True))
    else:
        v = float(check_range(value, name))
    return lambda step: v


def _describe_schedule(value):
    if callable(value):
        return getattr(value, "__name__", None) or repr(value)
    return float(value)


def _buffer(out, n, device, dtype):
    if out is not None:
        return out
    return torch.empty(n, device=device, dtype=dtype)


class Normal(GradientModel):
    r"""Gaussian gradients :math:`g_t \sim \mathcal N(\mu(t), \sigma(t)^2)`, i.i.d. over coordinates.

    Parameters
    ----------
    mean : float or callable, default 0
        :math:`\mu(t)`: a constant or a function of the 1-based step, e.g.
        ``lambda t: -t`` (the paper's Figure 6, right).
    sigma : float or callable, default 1
        :math:`\sigma(t) > 0`: a constant or a function of the step, e.g.
        ``lambda t: t`` or ``lambda t: 1 / t`` (Figure 5).
    """

    def __init__(self, mean=0.0, sigma=1.0):
        self._mean_arg, self._sigma_arg = mean, sigma
        self.mean = _schedule(mean, "mean", positive=False)
        self.sigma = _schedule(sigma, "sigma", positive=True)

    def sample(self, step, n, generator, device, dtype, out=None):
        # normal_ draws mean + sigma * z in one pass, into the engine's buffer
        return _buffer(out, n, device, dtype).normal_(self.mean(step), self.sigma(step), generator=generator)

    def describe(self):
        return {"model": "Normal", "mean": _describe_schedule(self._mean_arg),
                "sigma": _describe_schedule(self._sigma_arg)}


class StudentT(GradientModel):
    r"""Student-t gradients with :math:`\nu` degrees of freedom, scaled by ``scale``.

    Drawn as :math:`Z \sqrt{\nu / (2 G)}` with :math:`Z \sim \mathcal N(0,1)`
    and :math:`G \sim \mathrm{Gamma}(\nu/2)`, both from the run's generator.
    :math:`\nu = 1` is the Cauchy law; :math:`\nu \to \infty` the Gaussian one,
    so a few values of :math:`\nu` interpolate between Theorem 1 and the
    trimodal updates of the paper's Figure 7.
    """

    def __init__(self, nu, scale=1.0):
        self.nu = float(check_range(nu, "nu", 0.0, np.inf, low_open=True))
        self.scale = float(check_range(scale, "scale", 0.0, np.inf, low_open=True))

    def sample(self, step, n, generator, device, dtype, out=None):
        # torch.distributions.StudentT cannot take a generator; _standard_gamma can
        # (float64 avoids Gamma underflow to 0, i.e. infinite draws, for small nu)
        conc = torch.full((n,), self.nu / 2, device=device, dtype=torch.float64)
        gam = torch._standard_gamma(conc, generator=generator)
        z = torch.randn(n, device=device, dtype=torch.float64, generator=generator)
        x = z.mul_(gam.reciprocal_().mul_(self.nu / 2).sqrt_()).mul_(self.scale)
        if out is None:
            return x.to(dtype)
        return out.copy_(x)

    def describe(self):
        return {"model": "StudentT", "nu": self.nu, "scale": self.scale}


class Cauchy(GradientModel):
    """Standard Cauchy gradients (times ``scale``): the heavy-tailed case of the paper's Figure 7."""

    def __init__(self, scale=1.0):
        self.scale = float(check_range(scale, "scale", 0.0, np.inf, low_open=True))

    def sample(self, step, n, generator, device, dtype, out=None):
        return _buffer(out, n, device, dtype).cauchy_(0.0, self.scale, generator=generator)

    def describe(self):
        return {"model": "Cauchy", "scale": self.scale}


class Mixture(GradientModel):
    r"""Each coordinate, at each step, draws from component :math:`k` with probability :math:`w_k`.

    Parameters
    ----------
    components : sequence of GradientModel
    weights : sequence of float
        Non-negative, summing to 1 (normalised if they sum to something else > 0).

    Notes
    -----
    The choice is made afresh for every coordinate and step, so a coordinate
    that gets a spike at one step is an ordinary one at the next. Every
    component is drawn for all ``n`` coordinates and then selected, which
    costs ``len(components)`` draws per step but keeps the stream independent
    of the selection.
    """

    def __init__(self, components: Sequence[GradientModel], weights: Sequence[float]):
        components = list(components)
        if not components:
            raise ValueError("components must contain at least one gradient model")
        for c in components:
            if not (hasattr(c, "sample") or callable(c)):
                raise TypeError(f"components must be gradient models, got {type(c).__name__}")
        w = check_range(weights, "weights", 0.0, np.inf)
        if w.ndim != 1 or w.size != len(components):
            raise ValueError(f"weights must have one entry per component ({len(components)}), got {w.shape}")
        if w.sum() <= 0:
            raise ValueError("weights must have a positive sum")
        self.components = components
        self.weights = w / w.sum()

    def sample(self, step, n, generator, device, dtype, out=None):
        draws = [_draw(c, step, n, generator, device, dtype, None) for c in self.components]
        pick = torch.rand(n, device=device, dtype=torch.float64, generator=generator)
        x = draws[-1]
        # walk the cumulative weights from the top: coordinate i keeps component k if pick < cum[k]
        cum = np.cumsum(self.weights)
        for k in range(len(draws) - 2, -1, -1):
            x = torch.where(pick < cum[k], draws[k], x)
        if out is None:
            return x
        return out.copy_(x)

    def describe(self):
        return {"model": "Mixture", "weights": self.weights.tolist(),
                "components": [_describe(c) for c in self.components]}


def sparse_spikes(p: float = 0.01, scale: float = 30.0, base: GradientModel | None = None) -> Mixture:
    r"""Gaussian noise plus rare large-norm spikes: the paper's hypothesis for many-peaked updates.

    With probability ``1 - p`` a coordinate's gradient comes from ``base``
    (default :math:`\mathcal N(0, 1)`), with probability ``p`` from
    :math:`\mathcal N(0, \mathrm{scale}^2)`. Section 6.3 suggests that sparse
    but large gradients are one way to obtain multi-modal updates.
    """
    p = float(check_range(p, "p", 0.0, 1.0))
    return Mixture([base if base is not None else Normal(), Normal(0.0, scale)], [1.0 - p, p])


class Sparse(GradientModel):
    r"""A coordinate's gradient is exactly 0 with probability ``p_zero``, else drawn from ``base``.

    :math:`g_t = b_t \, x_t` with :math:`b_t \sim \mathrm{Bernoulli}(1 - p_0)`
    and :math:`x_t` from ``base`` (default :math:`\mathcal N(0, 1)`), afresh
    at every step: the rows of an embedding whose tokens are not in the
    batch, or the weights behind a ReLU that is off for the whole batch.
    """

    def __init__(self, p_zero: float, base: GradientModel | None = None):
        self.p_zero = float(check_range(p_zero, "p_zero", 0.0, 1.0, high_open=True))
        self.base = Normal() if base is None else base

    def sample(self, step, n, generator, device, dtype, out=None):
        x = _draw(self.base, step, n, generator, device, dtype, out)
        keep = torch.rand(n, device=device, dtype=torch.float64, generator=generator) >= self.p_zero
        return x.mul_(keep)

    def describe(self):
        return {"model": "Sparse", "p_zero": self.p_zero, "base": _describe(self.base)}


class Persistent(GradientModel):
    r"""Gradients with a per-coordinate component that lasts over steps.

    .. math:: g_{t,i} = \sqrt{\rho}\, c_i + \sqrt{1 - \rho}\, z_{t,i},
        \qquad c_i, z_{t,i} \sim \mathcal N(0, 1),

    so each coordinate's gradients are correlated across steps with
    correlation :math:`\rho` (at every lag) while the gradients of one step,
    across coordinates, are still standard normal. This is the persistence
    that chapter 8 measured in the transformer. :math:`c` is drawn at step 1
    from the run's generator (so the seed fixes it) and kept for the run.
    """

    def __init__(self, rho: float):
        self.rho = float(check_range(rho, "rho", 0.0, 1.0))
        self._c = None

    def sample(self, step, n, generator, device, dtype, out=None):
        if step == 1 or self._c is None or self._c.shape != (n,):
            self._c = torch.randn(n, device=device, dtype=dtype, generator=generator)
        z = _buffer(out, n, device, dtype).normal_(0.0, 1.0, generator=generator)
        return z.mul_(math.sqrt(1.0 - self.rho)).add_(self._c, alpha=math.sqrt(self.rho))

    def describe(self):
        return {"model": "Persistent", "rho": self.rho}


class Replay(GradientModel):
    r"""Recorded gradients played back: coordinate :math:`i` gets its own sequence ``data[:, i]``.

    ``data`` has shape ``(steps, K)`` (e.g. a recorder's ``result("grad").samples[name]``),
    and the run must have ``n = K`` coordinates and at most ``steps`` steps. Adam on a
    replay must reproduce the recorded updates up to the rounding of :math:`\theta`: a
    check of the capture and of the recursion, not a model.
    """

    def __init__(self, data):
        self.data = _recorded(data, "data")

    def sample(self, step, n, generator, device, dtype, out=None):
        if n != self.data.shape[1]:
            raise ValueError(f"replay needs n = {self.data.shape[1]} coordinates, got {n}")
        if step > self.data.shape[0]:
            raise ValueError(f"the recording has {self.data.shape[0]} steps; step {step} was asked for")
        return torch.as_tensor(self.data[step - 1], dtype=dtype, device=device)

    def describe(self):
        return {"model": type(self).__name__, "steps": int(self.data.shape[0]),
                "coordinates": int(self.data.shape[1])}


class TimeShuffled(Replay):
    r"""Each coordinate's own recorded gradients, its steps in a random order (one per coordinate).

    Keeps what is particular to each coordinate (its mean, sparsity and scale) and drops
    the order in time (growth, trends): the memory model of chapter 8. The order is drawn
    once from ``numpy.random.default_rng(seed)``.
    """

    def __init__(self, data, seed: int = 0):
        data = _recorded(data, "data")
        self.seed = check_seed(seed, "seed")
        order = np.argsort(np.random.default_rng(self.seed).random(data.shape), axis=0)
        super().__init__(np.take_along_axis(data, order, axis=0))

    def describe(self):
        return {**super().describe(), "seed": self.seed}


class Bootstrap(GradientModel):
    r"""Each step's gradients drawn with replacement from that step's recorded values.

    Independent over coordinates and steps: the recorded per-step marginal (tails, zeros,
    scale) without any per-coordinate memory. ``data``: shape ``(steps, K)``.
    """

    def __init__(self, data):
        self.data = _recorded(data, "data")
        self._rows = torch.as_tensor(self.data)

    def sample(self, step, n, generator, device, dtype, out=None):
        if step > self.data.shape[0]:
            raise ValueError(f"the recording has {self.data.shape[0]} steps; step {step} was asked for")
        row = self._rows[step - 1]
        idx = torch.randint(row.numel(), (n,), generator=generator)
        return row[idx].to(device=device, dtype=dtype)

    def describe(self):
        return {"model": "Bootstrap", "steps": int(self.data.shape[0]), "coordinates": int(self.data.shape[1])}


class SparseStudentT(GradientModel):
    r"""The paper's section 6 hypothesis as a model: sparse, heavy-tailed, with a scale that changes.

    At step :math:`t` a coordinate is exactly 0 with probability :math:`p_t`, else
    :math:`s_t\, T / \mathrm{med}|T|` with :math:`T` Student-t with :math:`\nu` degrees of
    freedom, so that the median :math:`|g|` of the non-zero gradients is :math:`s_t`.
    ``zero_fraction`` (:math:`p_t`) and ``scale`` (:math:`s_t`) are per-step sequences (NaN
    zero fractions count as 0); ``tail_index`` is one :math:`\nu` or a per-step sequence
    whose median is used, clipped to ``[0.3, 50]``. ``heavy=False`` draws Gaussians instead,
    ``sparse=False`` drops the zeros, ``varying=False`` keeps the first step's scale (the
    ablations of chapter 8).
    """

    def __init__(self, zero_fraction, tail_index, scale, heavy: bool = True, sparse: bool = True,
                 varying: bool = True):
        self.zero_fraction = np.nan_to_num(np.asarray(zero_fraction, dtype=np.float64), nan=0.0)
        self.nu = float(np.clip(np.nanmedian(tail_index), 0.3, 50.0))
        self.scale = np.asarray(scale, dtype=np.float64)
        if not (np.all((self.zero_fraction >= 0) & (self.zero_fraction < 1))):
            raise ValueError("zero_fraction must lie in [0, 1) at every step")
        if not (np.all(np.isfinite(self.scale)) and np.all(self.scale > 0)):
            raise ValueError("scale must be positive and finite at every step")
        self.heavy, self.sparse, self.varying = bool(heavy), bool(sparse), bool(varying)
        self._median_abs = float(stats_t_median_abs(self.nu)) if self.heavy else 0.6744897501960817

    def sample(self, step, n, generator, device, dtype, out=None):
        i = step - 1
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        if self.heavy:
            g = torch._standard_gamma(torch.full((n,), self.nu / 2, dtype=torch.float64), generator=generator)
            z = z * torch.sqrt(self.nu / 2 / g)
        z = z * ((self.scale[i] if self.varying else self.scale[0]) / self._median_abs)
        if self.sparse:
            keep = torch.rand(n, generator=generator, dtype=torch.float64) >= self.zero_fraction[i]
            z = z * keep
        return z.to(device=device, dtype=dtype)

    def describe(self):
        return {"model": "SparseStudentT", "nu": self.nu, "heavy": self.heavy, "sparse": self.sparse,
                "varying": self.varying, "zero_fraction": self.zero_fraction.tolist(), "scale": self.scale.tolist()}


def stats_t_median_abs(nu: float) -> float:
    r"""Median of :math:`|T|`, :math:`T` Student-t with ``nu`` degrees of freedom (its 75% quantile)."""
    from scipy import stats

    return float(stats.t(nu).ppf(0.75))


def _recorded(data, name: str) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or 0 in data.shape:
        raise ValueError(f"{name} must have shape (steps, coordinates), got {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"{name} holds NaN or inf: a recorded gradient must be finite")
    return data


def _draw_bytes(model, elem: int) -> int:
    """Bytes per coordinate that one step's draw from ``model`` may hold beyond its output (an upper bound)."""
    if isinstance(model, Mixture):
        return 8 + sum(elem + _draw_bytes(c, elem) for c in model.components)  # uniform pick + every draw
    if isinstance(model, StudentT):
        return 24  # float64 concentration, gamma and normal draws
    if isinstance(model, Sparse):
        return 8 + _draw_bytes(model.base, elem)  # the float64 keep draw
    if isinstance(model, Persistent):
        return 3 * elem  # the kept component
    return 2 * elem  # Normal, Cauchy draw in place; any other model: its result and a conversion


def _describe(model) -> dict:
    if hasattr(model, "describe"):
        return model.describe()
    return {"model": "callable", "repr": getattr(model, "__qualname__", None) or repr(model)}


def _draw(model, step, n, generator, device, dtype, out):
    """One step of gradients from a model or a plain callable, checked for shape and dtype."""
    if isinstance(model, GradientModel):
        g = model.sample(step, n, generator, device, dtype, out=out)
    elif hasattr(model, "sample"):
        g = model.sample(step, n, generator, device, dtype)
    else:
        g = model(step, n, generator, device, dtype)
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"gradients must return a torch.Tensor, got {type(g).__name__} at step {step}")
    if g.shape != (n,):
        raise ValueError(f"gradients must return a tensor of shape ({n},), got {tuple(g.shape)} at step {step}")
    if g.dtype != dtype or g.device.type != torch.device(device).type:
        g = g.to(device=device, dtype=dtype)
    return g


# --------------------------------------------------------------------------
# optimizers: state initialisation and one step, writing u_t into `u`
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Optimizer:
    name: str
    defaults: dict  # beta1, beta2, eps; None = the hyper-parameter does not exist for it
    buffers: tuple  # names of the length-n state vectors
    step: Callable  # step(state, g, t, hp, u) -> None: the torch route (any device)
    code: int  # the same step in adamdist_step of adamdist/_native/kernels.c (the CPU route)


def _adam_step(s, g, t, hp, u):
    """torch.optim.Adam (single-tensor path), same operation order, so the same float32 rounding (the torch route)."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    s["m"].lerp_(g, 1 - b1)
    s["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
    bc1 = 1 - b1**t
    bc2_sqrt = math.sqrt(1 - b2**t)
    denom = s["tmp"]
    torch.sqrt(s["v"], out=denom).div_(bc2_sqrt).add_(eps)
    # addcdiv computes (value * m) / denom: multiply first, as torch.optim.Adam does
    torch.mul(s["m"], -1 / bc1, out=u).div_(denom)


def _fairseq_adam_step(s, g, t, hp, u):
    """fairseq's Adam (:class:`adamdist.optim.FairseqAdam`): eps added to sqrt(v) before the bias correction."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    s["m"].mul_(b1).add_(g, alpha=1 - b1)
    s["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = s["tmp"]
    torch.sqrt(s["v"], out=denom).add_(eps)
    # addcdiv(m, denom, value=-step_size) computes (value * m) / denom
    torch.mul(s["m"], -(math.sqrt(1 - b2**t) / (1 - b1**t)), out=u).div_(denom)


def _laprop_step(s, g, t, hp, u):
    """Paper eqs. 2-4: normalise first (eq. 3), then average the normalised gradients."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    s["v"].mul_(b2).addcmul_(g, g, value=1 - b2)  # eq. 2
    denom = s["tmp"]
    torch.sqrt(s["v"], out=denom).div_(math.sqrt(1 - b2**t)).add_(eps)
    s["m"].mul_(b1).addcdiv_(g, denom, value=1 - b1)  # eq. 3
    torch.mul(s["m"], -1 / (1 - b1**t), out=u)  # eq. 4 with lambda factored out


def _rmsprop_step(s, g, t, hp, u):
    """torch.optim.RMSprop (centered=False): alpha = beta2, momentum = beta1."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    s["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = s["tmp"]
    torch.sqrt(s["v"], out=denom).add_(eps)
    if b1 > 0:
        s["m"].mul_(b1).addcdiv_(g, denom)
        torch.neg(s["m"], out=u)
    else:
        torch.div(g, denom, out=u).neg_()  # negation is exact: same bits as addcdiv(value=-1)


def _adagrad_step(s, g, t, hp, u):
    """torch.optim.Adagrad with lr_decay = 0 and initial_accumulator_value = 0."""
    s["v"].addcmul_(g, g, value=1)
    denom = s["tmp"]
    torch.sqrt(s["v"], out=denom).add_(hp["eps"])
    torch.div(g, denom, out=u).neg_()


def _average_step(s, g, t, hp, u):
    r"""Simple-average preconditioner :math:`n_t = \frac1t\sum_{i\le t} g_i^2` (Theorem 1 when beta1 = 0)."""
    b1, eps = hp["beta1"], hp["eps"]
    s["v"].addcmul_(g, g)  # running sum; dividing by t below keeps it an average without drift
    denom = s["tmp"]
    torch.sqrt(s["v"], out=denom).div_(math.sqrt(t)).add_(eps)
    if b1 > 0:
        s["m"].lerp_(g, 1 - b1)
        torch.div(s["m"], denom, out=u).mul_(-1 / (1 - b1**t))
    else:
        torch.div(g, denom, out=u).neg_()



OPTIMIZERS = {
    "adam": _Optimizer("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, ("m", "v", "tmp"), _adam_step, 0),
    "laprop": _Optimizer("laprop", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, ("m", "v", "tmp"), _laprop_step, 1),
    "rmsprop": _Optimizer("rmsprop", {"beta1": 0.0, "beta2": 0.99, "eps": 1e-8}, ("m", "v", "tmp"), _rmsprop_step, 2),
    "adagrad": _Optimizer("adagrad", {"beta1": 0.0, "beta2": None, "eps": 1e-10}, ("v", "tmp"), _adagrad_step, 3),
    "average": _Optimizer("average", {"beta1": 0.0, "beta2": None, "eps": 0.0}, ("m", "v", "tmp"), _average_step, 4),
    "fairseq_adam": _Optimizer("fairseq_adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, ("m", "v", "tmp"),
                               _fairseq_adam_step, 5),
}
"""The optimizers :func:`run` knows, with their default hyper-parameters (``None``: not used)."""


def _native_step(lib, opt: _Optimizer, state, g, t, hp, u) -> None:
    """``opt.step`` by the compiled kernel: one pass, the same recursion to float rounding."""
    params = np.array([hp.get("beta1", 0.0), hp.get("beta2", 0.0), hp["eps"], float(t)])
    m = state["m"].data_ptr() if "m" in state else None
    status = lib.adamdist_step(opt.code, 1 if u.dtype == torch.float64 else 0, m, state["v"].data_ptr(),
                               g.data_ptr(), u.data_ptr(), u.numel(), params.ctypes.data, torch.get_num_threads())
    if status != 0:
        raise RuntimeError(f"adamdist_step refused optimizer code {opt.code}")


def _hyper_parameters(opt: _Optimizer, beta1, beta2, eps) -> dict:
    """Fill defaults and check ranges; reject hyper-parameters the optimizer does not have."""
    hp = {}
    given = {"beta1": beta1, "beta2": beta2, "eps": eps}
    for key, value in given.items():
        default = opt.defaults[key]
        if default is None:
            if value is not None:
                raise ValueError(f"{key} is not a hyper-parameter of optimizer {opt.name!r}; leave it as None")
            continue
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{key} must be a real number, got {type(value).__name__}")
        if key == "eps":
            hp[key] = float(check_range(value, "eps", 0.0, np.inf))
        else:
            hp[key] = float(check_range(value, key, 0.0, 1.0, high_open=True))
    if opt.name == "adagrad" and hp["beta1"] != 0:
        raise ValueError("beta1 must be 0 for optimizer 'adagrad' (torch.optim.Adagrad has no momentum)")
    return hp


# --------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------

def _record_slots(steps: int, record) -> np.ndarray:
    if record is None:
        return np.arange(1, steps + 1)
    rec = np.asarray(record)
    if rec.ndim != 1 or rec.size == 0 or not np.issubdtype(rec.dtype, np.integer):
        raise TypeError("record must be a non-empty sequence of integer steps")
    if rec.min() < 1 or rec.max() > steps:
        raise ValueError(f"record entries must lie in [1, {steps}] (steps), got {rec.min()}..{rec.max()}")
    return np.unique(rec)


def _progress(iterable, enabled: bool, total: int, desc: str):
    if not enabled:
        return iterable
    # plain tqdm, not tqdm.auto: widget output breaks the book's static pages
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def run(optimizer: str = "adam", n: int = 100_000, steps: int = 20, beta1=None, beta2=None, eps=None,
        gradients=None, seed: int = 0, device="cpu", edges=None, sample_size: int = 2000,
        record=None, dtype=None, progress=None, name: str = "u") -> UpdateStats:
    r"""Simulate ``n`` independent coordinates for ``steps`` optimizer steps; summarise every update.

    Parameters
    ----------
    optimizer : {"adam", "fairseq_adam", "laprop", "rmsprop", "adagrad", "average"}
        The recursion (see the module docstring for the formulas).
    n : int, >= 1
        Number of independent coordinates (parameters).
    steps : int, >= 1
        Number of optimizer steps :math:`T`; steps are numbered from 1 (the paper's :math:`m`).
    beta1, beta2, eps : float, optional
        Hyper-parameters; ``None`` takes the optimizer's default
        (``OPTIMIZERS[optimizer].defaults``). ``beta1, beta2`` in ``[0, 1)``,
        ``eps >= 0``. ``beta2`` must stay ``None`` for ``"adagrad"`` and
        ``"average"``, which have none; ``beta1`` is the momentum of
        ``"rmsprop"`` in PyTorch's convention.
    gradients : GradientModel or callable, optional
        Where the gradients come from; default ``Normal()`` (i.i.d. standard
        normal, the setting of Theorem 1).
    seed : int
        Seeds the generator of the gradients and the choice of sampled
        coordinates; in ``[0, 2**63 - 1]``.
    device : str or torch.device
        ``"cpu"`` or ``"cuda"``; the same code runs on both.
    edges : array_like, optional
        Histogram bin edges; default :func:`adamdist.results.default_edges` (80 bins on [-4, 4]).
    sample_size : int, >= 0
        Number of coordinates whose raw updates are kept (the same ones at every step).
    record : sequence of int, optional
        Steps to summarise; default every step. The recursion always runs all steps.
    dtype : torch.dtype, optional
        ``torch.float32`` (default, as in training) or ``torch.float64``.
    progress : bool, optional
        Show a ``tqdm`` progress bar; default: only when ``n * steps > 1e8``.
    name : str
        Name of the tracked tensor in the result.

    Raises
    ------
    ValueError
        For arguments outside the ranges above, and when the run's buffers
        (about ``n`` times the state, gradient and update vectors plus
        temporaries, and per recorded step the histogram and samples) would
        not fit in the free memory of ``device``: the message gives the
        estimate, instead of the process being killed.

    Returns
    -------
    UpdateStats
        One row per recorded step, one name. ``metadata`` records optimizer,
        hyper-parameters, gradient model, ``n``, ``steps``, seed, device,
        dtype, the kernel (``"compiled"`` or ``"torch"``, see the module
        docstring) and the torch and adamdist versions.

    Examples
    --------
    Theorem 1 (simple average, no momentum, Gaussian gradients):

    >>> from adamdist.simulate import run
    >>> stats = run("average", n=10_000, steps=5, seed=1)
    >>> stats.var.shape
    (5, 1)
    """
    from . import __version__

    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    opt = OPTIMIZERS[optimizer]
    n = check_int(n, "n", low=1)
    steps = check_int(steps, "steps", low=1)
    seed = check_seed(seed, "seed")
    sample_size = check_int(sample_size, "sample_size", low=0)
    hp = _hyper_parameters(opt, beta1, beta2, eps)
    gradients = Normal() if gradients is None else gradients
    if not (hasattr(gradients, "sample") or callable(gradients)):
        raise TypeError("gradients must be a GradientModel (an object with .sample) or a callable "
                        f"(step, n, generator, device, dtype) -> Tensor, got {type(gradients).__name__}")
    dtype = torch.float32 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
    edges = default_edges() if edges is None else edges
    wanted = _record_slots(steps, record)
    elem = torch.finfo(dtype).bits // 8
    # per coordinate: the optimizer's state, gradient and update vectors, the gradient model's temporaries
    # and the torch route's statistics (~40 bytes); per recorded step: histogram, moments and samples
    per_entry = (len(opt.buffers) + 2) * elem + _draw_bytes(gradients, elem) + 40
    per_step = (np.asarray(edges).size + 1 + 6 + min(sample_size, n)) * 8
    check_memory(n * per_entry + len(wanted) * per_step,
                 f"simulate.run (n = {n} coordinates at {per_entry} bytes, {len(wanted)} recorded steps at "
                 f"{per_step} bytes)", "n (or the recorded steps, record/steps, and sample_size)", device=device)
    if progress is None:
        progress = n * steps > 1e8

    generator = torch.Generator(device=device).manual_seed(seed)
    native = _native.library() if device.type == "cpu" else None
    state = {b: torch.zeros(n, device=device, dtype=dtype) for b in opt.buffers if not (native and b == "tmp")}
    g_buf = torch.empty(n, device=device, dtype=dtype)
    u = torch.empty(n, device=device, dtype=dtype)
    acc = StatsAccumulator([name], [n], len(wanted), edges, sample_size=sample_size, seed=seed, device=device)
    is_recorded = np.zeros(steps + 1, dtype=bool)
    is_recorded[wanted] = True

    slot = 0
    for t in _progress(range(1, steps + 1), progress, steps, f"simulate {optimizer}"):
        g = _draw(gradients, t, n, generator, device, dtype, g_buf)
        if native is not None:
            _native_step(native, opt, state, g.contiguous(), t, hp, u)
        else:
            opt.step(state, g, t, hp, u)
        if is_recorded[t]:
            acc.set_step(slot, t)
            acc.record(slot, 0, u)
            slot += 1

    metadata = {
        "source": "adamdist.simulate.run",
        "optimizer": optimizer, **hp, "n": n, "steps": steps,
        "gradients": _describe(gradients), "seed": seed, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "sample_size": sample_size,
        "kernel": "compiled" if native is not None else "torch",
        "torch_version": torch.__version__, "adamdist_version": __version__,
    }
    return acc.result(metadata=metadata)


# --------------------------------------------------------------------------
# shape measures
# --------------------------------------------------------------------------

def count_modes(hist, min_rel_height: float = 0.02, z: float = 4.0) -> int:
    r"""Number of modes of a histogram: peaks that stand out of the noise.

    The rule: a bin (or a run of equal bins) is a *mode* if it is a local
    maximum of the counts and its topographic prominence :math:`p` (the height
    above the higher of the two lowest points separating it from any taller
    peak, as in :func:`scipy.signal.find_peaks`) satisfies both

    .. math::

        p \ge \texttt{min\_rel\_height} \cdot \max_j c_j
        \qquad\text{and}\qquad
        p \ge z \sqrt{c_\text{peak} + c_\text{base}},

    i.e. the dip is a visible fraction of the tallest bin *and* larger than
    ``z`` Poisson standard errors of the difference between the peak count
    and the base count. The tallest peak always counts, so a non-empty
    histogram has at least one mode. The histogram is padded with an empty bin on each
    side, so a peak in the first or last bin counts. Bins must be of equal
    width (the counts are compared directly).

    Parameters
    ----------
    hist : array_like of int, shape (B,)
        Bin counts (e.g. ``stats.hist[i, j]``).
    min_rel_height : float in [0, 1]
    z : float >= 0

    Returns
    -------
    int
        0 for an empty histogram.
    """
    return int(mode_indices(hist, min_rel_height, z).size)


def mode_indices(hist, min_rel_height: float = 0.02, z: float = 4.0) -> np.ndarray:
    """Bin indices of the modes of a histogram, by the rule of :func:`count_modes`.

    A plateau's mode is at its middle bin; an empty histogram has none.
    """
    from scipy.signal import find_peaks

    c = np.asarray(hist, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"hist must be 1-d (one histogram), got shape {c.shape}")
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError("hist must contain finite non-negative counts")
    min_rel_height = float(check_range(min_rel_height, "min_rel_height", 0.0, 1.0))
    z = float(check_range(z, "z", 0.0, np.inf))
    if c.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    padded = np.concatenate([[0.0], c, [0.0]])
    peaks, props = find_peaks(padded, prominence=0)
    prom = props["prominences"]
    peak_c = padded[peaks]
    base_c = peak_c - prom
    keep = (prom >= min_rel_height * c.max()) & (prom >= z * np.sqrt(peak_c + base_c))
    keep[np.argmax(peak_c)] = True  # a non-empty histogram has at least its tallest mode
    return peaks[keep] - 1


def mode_table(stats: UpdateStats, **kwargs) -> "pd.DataFrame":
    """Mode count (:func:`count_modes`), variance and skewness per (step, name), as a tidy frame.

    Extra keyword arguments go to :func:`count_modes`. Only uniform bin edges
    are supported, because :func:`count_modes` compares raw counts.
    """
    import pandas as pd

    widths = np.diff(stats.edges)
    if not np.allclose(widths, widths[0], rtol=1e-9):
        raise ValueError("mode_table needs uniform bin edges")
    rows = []
    for i, step in enumerate(stats.steps):
        for j, nm in enumerate(stats.names):
            rows.append({"step": int(step), "name": nm, "modes": count_modes(stats.hist[i, j], **kwargs),
                         "var": float(stats.var[i, j]), "skew": float(stats.skew[i, j]),
                         "outside": int(stats.underflow[i, j] + stats.overflow[i, j])})
    return pd.DataFrame(rows)
