"""Section 5 and appendix A: the update law of Adam on real vision networks.

Two experiments, each a frozen config dataclass and a cached ``run(config)``:

* :class:`CifarConfig`: a CIFAR-10 network (RegNetX-200MF in section 5, the
  appendix architectures in A.2) trained from initialisation with Adam;
* :class:`MnistConfig`: the 4-layer MNIST CNN of section 6.1, with the
  gradient recorded too, so that its variance over time can be measured.

Both record, for every *tracked* weight tensor and every step
:math:`m = 1..\\text{steps}`, the update
:math:`u_m = (\\theta_m - \\theta_{m-1}) / \\eta` with
:class:`adamdist.capture.UpdateRecorder`, and return its
:class:`~adamdist.results.UpdateStats`.

Which tensors: *every* weight tensor (``ndim >= 2``, i.e. convolution and
linear kernels) with more than ``min_numel`` entries (default :math:`10^4`,
the paper's "layers with more than :math:`10^4` parameters", appendix A.2).
Nothing is hand-picked: chapters show all of them, and when a single layer
is drawn for a histogram it is drawn by :func:`pick_layer` with a stated seed.

The paper gives neither a batch size nor a step count. This book reads its
setting as batch 128 (the usual CIFAR-10 recipe, e.g. the ``pytorch-cifar``
training script) and 100 steps (the horizon of its "agreement holds much
longer" statements). Profiles (:func:`adamdist.experiments.profile`,
``ADAMDIST_PROFILE``):

* ``quick`` (default, the book's build on a 2-core CPU): RegNetX-200MF and the
  MNIST CNN at that setting (batch 128, 100 steps); RegNetX's extra runs
  (seeds and momentum at batch 128, the batch sweep :data:`BATCH_SWEEP`) for
  the figures' 20 steps; the other appendix architectures for 20 steps at the
  smaller batches of :data:`QUICK_BATCH` (at batch 128 they alone would take
  about 11 minutes on two cores, more than a third of the book's 30-minute
  build budget);
* ``paper`` (meant for a GPU): batch 128 and 100 steps for every run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np

from .._validation import check_int, check_range
from ..results import UpdateStats
from .common import cached, default_device, pick_layer, profile

__all__ = [
    "CifarConfig",
    "MnistConfig",
    "PAPER_BATCH",
    "QUICK_BATCH",
    "BATCH_SWEEP",
    "book_configs",
    "APPENDIX_ARCHITECTURES",
    "cifar_config",
    "mnist_config",
    "run",
    "select_layers",
    "pick_layer",
    "training_batches",
    "comparison",
    "step_summary",
    "law_curves",
    "spread_over_layers",
]

#: The architectures of the paper's appendix A.2 (plus RegNetX-200MF of section 5), in :func:`vision_model` names.
APPENDIX_ARCHITECTURES = ("regnetx_200mf", "vgg11", "resnet18", "shufflenet_v2", "resnext29_2x32d",
                          "mobilenet_v2", "efficientnet_b0", "densenet121")

#: The batch size of this book's reading of the paper's setting.
PAPER_BATCH = 128
_PAPER_STEPS = 100
#: Architectures the ``quick`` profile trains at the paper's setting (batch 128, 100 steps).
_QUICK_LONG = ("regnetx_200mf",)
_FIGURE_STEPS = 20
#: Batch size per appendix architecture in the ``quick`` profile. The grouped, depthwise and
#: densely connected convolutions of ResNeXt-29, EfficientNet-B0 and DenseNet-121 are the slowest
#: per image on a CPU (``benchmarks/bench_chapters.py``), so they get 16 images per step; the rest 32.
QUICK_BATCH = {"resnext29_2x32d": 16, "efficientnet_b0": 16, "densenet121": 16}
_QUICK_DEFAULT_BATCH = 32


@dataclass(frozen=True)
class _RecordedRun:
    """What every vision run shares: the training and recording settings.

    Attributes
    ----------
    steps : int
        Optimizer steps recorded, :math:`m = 1..\\text{steps}`.
    batch_size : int
    lr : float
        Adam's learning rate (divided out of the recorded update).
    beta1, beta2, eps : float
        Adam's hyper-parameters. Theorem 1 assumes ``beta1 = 0`` (no momentum)
        and a simple average of squared gradients; with ``beta2 = 0.999`` and
        :math:`m \\le 100` Adam's bias-corrected average is within a few percent
        of it. ``eps = 1e-12`` is negligible next to the gradients' scale but
        keeps an entry whose gradient is exactly 0 finite (its update is 0).
    seed : int
        Seeds the model's initialisation (and dropout, stochastic depth).
    data_seed : int
        Seeds the order of the training images (a fixed permutation of the
        train split; the first ``steps * batch_size`` images are used).
    min_numel : int
        Track every weight tensor (ndim >= 2) with more than this many entries.
    sample_size : int
        Coordinates per tensor whose exact values are kept (KS distances).
    """

    steps: int = _FIGURE_STEPS
    batch_size: int = PAPER_BATCH
    lr: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.999
    eps: float = 1e-12
    seed: int = 0
    data_seed: int = 0
    min_numel: int = 10_000
    sample_size: int = 2000

    def __post_init__(self):
        check_int(self.steps, "steps", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        check_range(self.lr, "lr", 0.0, np.inf, low_open=True)
        check_range(self.beta1, "beta1", 0.0, 1.0, high_open=True)
        check_range(self.beta2, "beta2", 0.0, 1.0, high_open=True)
        check_range(self.eps, "eps", 0.0, np.inf)
        check_int(self.seed, "seed")
        check_int(self.data_seed, "data_seed")
        check_int(self.min_numel, "min_numel", low=0)
        check_int(self.sample_size, "sample_size", low=0)


@dataclass(frozen=True)
class CifarConfig(_RecordedRun):
    """One CIFAR-10 training run whose updates are recorded.

    The fields of the shared settings (``steps``, ``batch_size``, ``lr``,
    ``beta1``, ``beta2``, ``eps``, ``seed``, ``data_seed``, ``min_numel``,
    ``sample_size``; see :class:`_RecordedRun`), and:

    Attributes
    ----------
    arch : str
        A :func:`adamdist.models.vision_model` name.
    record_grad : bool
        Record the gradients too (their per-step moments per tensor land in
        ``metadata["grad"]``): the measured gradient scale that the
        measured-scale test of :mod:`adamdist.verdict` feeds to the exact law.
    """

    arch: str = "regnetx_200mf"
    record_grad: bool = True

    def __post_init__(self):
        super().__post_init__()
        from ..models.vision import ARCHITECTURES

        if self.arch not in ARCHITECTURES or self.arch == "mnist_cnn":
            raise ValueError(f"arch must be a CIFAR model, one of {sorted(set(ARCHITECTURES) - {'mnist_cnn'})}, "
                             f"got {self.arch!r}")


@dataclass(frozen=True)
class MnistConfig(_RecordedRun):
    """One MNIST training run of the 4-layer CNN, updates and gradients recorded.

    The shared settings of :class:`_RecordedRun` (no ``arch``: the model is
    :func:`adamdist.models.mnist_cnn`), with MNIST's quick defaults. The
    gradient is recorded as well (``UpdateRecorder(record_grad=True)``); its
    per-step moments are in the result's ``metadata["grad"]``.
    """

    steps: int = _PAPER_STEPS
    batch_size: int = PAPER_BATCH


def cifar_config(arch: str = "regnetx_200mf", run_profile: str | None = None, **overrides) -> CifarConfig:
    """The :class:`CifarConfig` of ``arch`` under a profile (default: :func:`profile`).

    ``paper``: batch 128 and 100 steps for every architecture. ``quick``:
    batch 128 and 100 steps for RegNetX-200MF; 20 steps (the paper's figure
    horizon) at batch :data:`QUICK_BATCH` ``.get(arch, 32)`` for the others.
    ``overrides`` replace any field.
    """
    run_profile = profile() if run_profile is None else run_profile
    if run_profile == "paper":
        base = dict(steps=_PAPER_STEPS, batch_size=PAPER_BATCH)
    elif run_profile == "quick":
        base = (dict(steps=_PAPER_STEPS, batch_size=PAPER_BATCH) if arch in _QUICK_LONG else
                dict(steps=_FIGURE_STEPS, batch_size=QUICK_BATCH.get(arch, _QUICK_DEFAULT_BATCH)))
    else:
        raise ValueError(f"run_profile must be 'quick' or 'paper', got {run_profile!r}")
    return CifarConfig(arch=arch, **{**base, **overrides})


def mnist_config(run_profile: str | None = None, **overrides) -> MnistConfig:
    """The :class:`MnistConfig` under a profile: batch 128 and 100 steps in both (a cheap run)."""
    run_profile = profile() if run_profile is None else run_profile
    if run_profile in ("paper", "quick"):
        base = dict(steps=_PAPER_STEPS, batch_size=PAPER_BATCH)
    else:
        raise ValueError(f"run_profile must be 'quick' or 'paper', got {run_profile!r}")
    return MnistConfig(**{**base, **overrides})


# -- pieces --------------------------------------------------------------------------------------
def select_layers(model, min_numel: int = 10_000) -> dict:
    """Every weight tensor (``ndim >= 2``) of ``model`` with more than ``min_numel`` entries.

    Biases and normalisation scales are 1-d and excluded: they have far fewer
    entries than the histograms need, and the rule is the paper's (A.2).

    Returns
    -------
    dict
        name -> parameter, in the model's order.
    """
    check_int(min_numel, "min_numel", low=0)
    chosen = {n: p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and p.numel() > min_numel}
    if not chosen:
        raise ValueError(f"the model has no weight tensor with more than {min_numel} entries")
    return chosen


def training_batches(dataset, steps: int, batch_size: int, seed: int):
    """The first ``steps * batch_size`` images of a seeded permutation, as ``steps`` batches.

    Loading only the images that are used keeps the quick profile cheap (a few
    hundred PNGs instead of 50,000); the permutation makes the classes mixed
    and the order reproducible.

    Returns
    -------
    list of (Tensor, Tensor)
        ``(images, labels)`` per step.
    """
    import torch

    need = steps * batch_size
    if need > len(dataset):
        raise ValueError(f"{steps} steps of {batch_size} need {need} images; the data set has {len(dataset)}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:need].tolist()
    batches = []
    for s in range(steps):
        items = [dataset[i] for i in order[s * batch_size:(s + 1) * batch_size]]
        images = torch.stack([x for x, _ in items])
        labels = torch.tensor([int(y) for _, y in items])
        batches.append((images, labels))
    return batches


def _train_and_record(model, batches, config, *, record_grad: bool, desc: str, device):
    """Train ``model`` on ``batches`` with Adam and record every tracked tensor's updates."""
    import torch

    from ..capture import UpdateRecorder

    model.to(device).train()
    tracked = select_layers(model, config.min_numel)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(float(config.beta1), float(config.beta2)),
                           eps=config.eps)
    losses = []
    # plain tqdm (not tqdm.auto): notebook widgets would break the book's static pages
    from tqdm import tqdm

    start = time.perf_counter()
    with UpdateRecorder(opt, tracked, steps=config.steps, sample_size=config.sample_size, seed=config.seed,
                        record_grad=record_grad) as rec:
        for images, labels in tqdm(batches, desc=desc, file=sys.stderr, leave=False, mininterval=5):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    seconds = time.perf_counter() - start
    updates = rec.result("update")
    grads = rec.result("grad") if record_grad else None
    return updates, grads, [float(v) for v in torch.stack(losses).cpu()], seconds, tracked


def _with_metadata(stats: UpdateStats, extra: dict) -> UpdateStats:
    return dataclasses.replace(stats, metadata={**stats.metadata, **extra})


def _grad_summary(grads: UpdateStats, samples: bool = True) -> dict:
    """Per-step gradient moments per tensor, JSON-ready: mean, variance and mean square over the
    tensor's entries, and (``samples=True``) the raw gradient of the recorder's sampled coordinates
    (``samples``, steps x coordinates, float32 precision) for per-coordinate statistics over time."""
    out = {}
    for j, name in enumerate(grads.names):
        out[name] = {"mean": grads.mean[:, j].tolist(), "var": grads.var[:, j].tolist(),
                     "mean_square": (grads.var[:, j] + grads.mean[:, j] ** 2).tolist()}
        if samples:
            out[name]["samples"] = grads.samples[name].astype(np.float32).tolist() if name in grads.samples else []
    return out


def _run_cifar(config: CifarConfig) -> UpdateStats:
    import torch

    from ..data.vision import cifar10, cifar10_transform
    from ..models.vision import count_parameters, vision_model

    data = cifar10(train=True, transform=cifar10_transform())
    batches = training_batches(data, config.steps, config.batch_size, config.data_seed)
    torch.manual_seed(config.seed)
    model = vision_model(config.arch)
    device = default_device()
    updates, grads, losses, seconds, tracked = _train_and_record(
        model, batches, config, record_grad=config.record_grad, desc=f"{config.arch} seed {config.seed}",
        device=device)
    extra = {"grad": _grad_summary(grads, samples=False)} if config.record_grad else {}
    return _with_metadata(updates, {**extra,
        "experiment": "cifar10", "config": dataclasses.asdict(config), "loss": losses,
        "train_seconds": seconds, "device": str(device), "parameters": count_parameters(model),
        "layer_rule": f"every weight tensor (ndim >= 2) with more than {config.min_numel} entries",
        "numel": {n: p.numel() for n, p in tracked.items()},
        "data": getattr(data, "adamdist_note", "CIFAR-10 train split"),
    })


def _run_mnist(config: MnistConfig) -> UpdateStats:
    import torch

    from ..data.vision import mnist, mnist_transform
    from ..models.vision import count_parameters, mnist_cnn

    data = mnist(train=True, transform=mnist_transform())
    batches = training_batches(data, config.steps, config.batch_size, config.data_seed)
    torch.manual_seed(config.seed)
    model = mnist_cnn()
    device = default_device()
    updates, grads, losses, seconds, tracked = _train_and_record(model, batches, config, record_grad=True,
                                                                 desc=f"mnist_cnn seed {config.seed}", device=device)
    return _with_metadata(updates, {
        "experiment": "mnist", "config": dataclasses.asdict(config), "loss": losses,
        "train_seconds": seconds, "device": str(device), "parameters": count_parameters(model),
        "layer_rule": f"every weight tensor (ndim >= 2) with more than {config.min_numel} entries",
        "numel": {n: p.numel() for n, p in tracked.items()},
        "grad": _grad_summary(grads),
        "data": getattr(data, "adamdist_note", "MNIST train split"),
    })


def run(config, folder=None) -> UpdateStats:
    """Run (or load from the on-disk cache) one experiment.

    Parameters
    ----------
    config : CifarConfig or MnistConfig
    folder : path, optional
        Cache folder; default :func:`adamdist.experiments.common.cache_dir`.

    Returns
    -------
    UpdateStats
        The recorded updates of every tracked tensor, steps ``1..config.steps``;
        ``metadata`` has the config, per-step training loss, the training time,
        the device, the layer rule and the data's origin (MNIST: also the
        per-step gradient moments under ``"grad"``). Cached by the config's
        hash: an unchanged config loads, a changed one recomputes.
    """
    if isinstance(config, CifarConfig):
        return cached(config, lambda: _run_cifar(config), folder=folder)
    if isinstance(config, MnistConfig):
        return cached(config, lambda: _run_mnist(config), folder=folder)
    raise TypeError(f"config must be a CifarConfig or MnistConfig, got {type(config).__name__}")


# -- summaries used by the chapters -----------------------------------------------------------
def comparison(stats: UpdateStats, beta2: float | None = None, beta1: float | None = None):
    """KS distance and variance ratio per (step, tensor) against Theorem 1 at Adam's effective ``m``.

    :func:`adamdist.capture.compare_with_theory` (Theorem 1 at the Kish
    effective sample size of Adam's bias-corrected average, about :math:`m`
    here) plus ``within_band`` (KS below the 99% band) and ``abs_var_ratio``
    (measured / predicted variance of :math:`|u|`, Corollary 2).
    ``beta1=0`` compares a run with momentum against Theorem 1 anyway (the
    recorder refuses otherwise, since the theorem assumes no momentum).
    """
    from .. import theory
    from ..capture import compare_with_theory

    beta2 = stats.metadata.get("config", {}).get("beta2") if beta2 is None else beta2
    frame = compare_with_theory(stats, beta2, beta1=beta1)
    m_eff = np.asarray(theory.adam_effective_m(beta2, frame["step"].to_numpy()), dtype=np.float64)
    abs_pred = np.asarray(theory.abs_update_variance(m_eff), dtype=np.float64)
    abs_measured = np.array([stats.abs_var[list(stats.steps).index(s), stats.names.index(n)]
                             for s, n in zip(frame["step"], frame["name"])])
    with np.errstate(divide="ignore", invalid="ignore"):
        abs_ratio = np.where(abs_pred > 0, abs_measured / abs_pred, np.nan)
    return frame.assign(within_band=frame["ks"] <= frame["ks_band"], m_eff=m_eff,
                        abs_var_measured=abs_measured, abs_var_predicted=abs_pred, abs_var_ratio=abs_ratio)


def step_summary(frame):
    """Per step, over tensors: median and max KS, share within the 99% band, median variance ratios."""
    return frame.groupby("step").agg(
        tensors=("name", "size"), ks_median=("ks", "median"), ks_max=("ks", "max"),
        within_band=("within_band", "mean"), var_ratio_median=("var_ratio", "median"),
        abs_var_ratio_median=("abs_var_ratio", "median")).reset_index()


def law_curves(steps, beta2: float | None, x, cap: float | None = None):
    """Tidy density of the predicted law on the grid ``x`` for each step (``step, x, density``).

    Steps whose law is the discrete m = 1 two-point law have no density and are
    left out. ``cap`` clips the density (it diverges at the support's ends for
    :math:`m < 3`) so that a chart's axis stays readable.
    """
    import pandas as pd

    from .. import theory

    x = np.asarray(x, dtype=np.float64)
    parts = []
    for m in steps:
        m_eff = float(theory.adam_effective_m(beta2, m))
        if m_eff == 1.0:
            continue
        d = theory.update_distribution(m_eff).pdf(x)
        if cap is not None:
            d = np.minimum(d, cap)
        parts.append(pd.DataFrame({"step": int(m), "x": x, "density": d}))
    return pd.concat(parts, ignore_index=True)


def spread_over_layers(stats: UpdateStats, column: str = "var", low: float = 0.1, high: float = 0.9):
    """Per step: median and the ``low``/``high`` quantiles of a moment over the tracked tensors."""
    import pandas as pd

    values = getattr(stats, column)
    return pd.DataFrame({"step": stats.steps, "median": np.nanmedian(values, axis=1),
                         "low": np.nanquantile(values, low, axis=1), "high": np.nanquantile(values, high, axis=1)})


#: Batch sizes of RegNetX-200MF's batch-size sweep per profile (the paper's setting is 128). Batch 512
#: alone costs about 10 minutes of the 2-core build (20 steps), so ``quick`` stops at 128.
BATCH_SWEEP = {"quick": (16, 32, 64, 128), "paper": (16, 32, 64, 128, 512)}


def book_configs(run_profile: str | None = None) -> dict:
    """Every vision run the book makes, by name: one list that the chapters and the summary page share.

    * ``"<arch>"`` for RegNetX-200MF and each appendix architecture (:func:`cifar_config`);
    * ``"regnetx_200mf/seed1"``, ``"regnetx_200mf/seed2"``: Figure 8's other seeds;
    * ``"regnetx_200mf/beta1=0.9"``: the momentum contrast;
    * ``"regnetx_200mf/batch<B>"`` for the profile's sweep :data:`BATCH_SWEEP` other than 128
      (the batch-128 point is the first steps of ``"regnetx_200mf"``);
    * ``"mnist"``: :func:`mnist_config`.

    The extra RegNetX runs are at batch 128 (the sweep aside) and cover the figures' 20 steps in
    ``quick``, 100 in ``paper``.
    """
    run_profile = profile() if run_profile is None else run_profile
    short = _FIGURE_STEPS if run_profile == "quick" else _PAPER_STEPS
    configs = {arch: cifar_config(arch, run_profile) for arch in APPENDIX_ARCHITECTURES}
    for s in (1, 2):
        configs[f"regnetx_200mf/seed{s}"] = cifar_config("regnetx_200mf", run_profile, seed=s, steps=short)
    configs["regnetx_200mf/beta1=0.9"] = cifar_config("regnetx_200mf", run_profile, beta1=0.9, steps=short)
    for b in BATCH_SWEEP[run_profile]:
        if b != PAPER_BATCH:
            configs[f"regnetx_200mf/batch{b}"] = cifar_config("regnetx_200mf", run_profile, batch_size=b, steps=short)
    configs["mnist"] = mnist_config(run_profile)
    return configs
