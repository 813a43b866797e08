r"""Record the update distribution of a live ``torch.optim`` optimizer.

The paper's experiments (section 5, Figures 2-3) look at the update of a real
network, step by step,

.. math::

    u_t = \frac{\theta_t - \theta_{t-1}}{\eta_t},

where :math:`\eta_t` is the learning rate of the parameter's group *at step t*
(so schedulers and per-group rates are divided out). For Adam with
:math:`\beta_1 = 0` this is :math:`-g_t / (\sqrt{\hat v_t} + \epsilon)`, the
quantity whose law Theorem 1 predicts (eq. 30); the sign convention does not
matter for that symmetric law, but it does for ``skew``: a positive mean
gradient gives a negative mean :math:`u`.

:class:`UpdateRecorder` gets :math:`u_t` from
:meth:`torch.optim.Optimizer.register_step_pre_hook` (snapshot
:math:`\theta_{t-1}` into a preallocated buffer) and
:meth:`~torch.optim.Optimizer.register_step_post_hook` (difference in place,
divide by the rate), and hands it to :class:`adamdist.results.StatsAccumulator`,
which keeps per-step moments, a histogram and a fixed sample of coordinates in
preallocated device buffers. Nothing inside the step synchronises with the
host, so it works with any optimizer, on any device, and leaves the
optimizer's arithmetic untouched (it only reads the parameters).

Distributed training (``torch.distributed``):

* plain (DDP-replicated) parameters are the same on every rank after the
  step, so only rank 0 records them by default (``all_ranks=True`` makes every
  rank record its own copy);
* FSDP2 (:func:`torch.distributed.fsdp.fully_shard`) parameters are
  :class:`~torch.distributed.tensor.DTensor` shards: every rank records the
  statistics of its own shard, and :meth:`UpdateRecorder.result` combines them
  into the statistics of the whole tensor (moments with Chan et al.'s
  parallel update, histograms summed, the sampled coordinates are global
  coordinates, each owned by exactly one rank).
"""

from __future__ import annotations

import bisect
import numbers
import warnings
import zlib
from typing import Iterable, Mapping

import numpy as np

from ._optional import require

# the hooks are torch.optim hooks: without torch this module has nothing to offer
require("torch", "torch", __name__)

from ._validation import check_int, check_memory, check_seed  # noqa: E402
from .results import (StatsAccumulator, UpdateStats, _check_edges, compare_with_law, default_edges,  # noqa: E402
                      merge_shards)

__all__ = ["UpdateRecorder", "select_parameters", "predicted_law", "compare_with_theory", "DEFAULT_STEPS"]

#: Steps recorded when ``steps`` is not given: the regime of Figures 2-3 (m <= 100).
DEFAULT_STEPS = 100

_KINDS = ("update", "grad")

#: Largest step number: results store them as int64.
_MAX_STEP = 2**63 - 1

#: Entries summarised together by one DeviceBatch on the torch route: its temporaries take ~40 bytes each.
_CHUNK_ENTRIES = 1 << 22


def _jsonable(value):
    """Hyper-parameters as JSON (tensors become numbers, tuples lists, the rest repr)."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _resolve_steps(steps) -> range | list[int]:
    """The recorded step numbers, sorted and distinct.

    Ints and ranges stay ranges: listing ``steps=10**12`` one by one would
    exhaust the memory before :meth:`UpdateRecorder.attach` can refuse it.
    """
    if steps is None:
        return range(1, DEFAULT_STEPS + 1)
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        return range(1, check_int(steps, "steps", low=1, high=_MAX_STEP) + 1)
    if isinstance(steps, range):
        ascending = steps if steps.step > 0 else steps[::-1]
        if not ascending:
            raise ValueError("steps must name at least one step")
        for end in (ascending[0], ascending[-1]):
            check_int(end, "steps entry", low=1, high=_MAX_STEP)
        return ascending
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise TypeError(f"steps must be an int N (the first N steps) or an iterable of 1-based step numbers, "
                        f"got {type(steps).__name__}")
    out = sorted({check_int(s, "steps entry", low=1, high=_MAX_STEP) for s in steps})
    if not out:
        raise ValueError("steps must name at least one step")
    return out


def _resolve_edges(bins, name: str) -> np.ndarray:
    if bins is None:
        return default_edges()
    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        return default_edges(bins=check_int(bins, name, low=1))
    try:
        return _check_edges(bins)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc} (pass an int for uniform bins on [-4, 4], or strictly "
                         f"increasing finite edges)") from None


def _sample_coordinates(name: str, numel: int, sample_size: int, seed: int) -> np.ndarray:
    """Sorted global flat indices of the coordinates sampled for ``name``.

    Seeded by ``(seed, crc32(name))``: the choice of a tensor's coordinates
    does not depend on which other tensors are tracked, on the world size or
    on the sharding, so FSDP and single-process runs sample the same entries.
    ``Generator.choice`` without replacement uses O(k) memory for k << numel.
    """
    k = min(sample_size, numel)
    if k == numel:
        return np.arange(numel, dtype=np.int64)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return np.sort(rng.choice(numel, size=k, replace=False, shuffle=False)).astype(np.int64)


def _dist_info():
    """(rank, world_size) of the default process group, or (0, 1) without one."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch built without distributed
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shard_layout(param):
    """This rank's piece of a DTensor: ``(contributes, local_shape, ranges)``.

    ``ranges`` maps a tensor dim to the ``[lo, hi)`` slice of it held here.
    ``Shard(d)`` follows :func:`torch.chunk` (ceil-sized chunks, trailing ranks
    possibly empty), which is what DTensor and FSDP2 use; on a ``Replicate``
    mesh dim only coordinate 0 contributes, so each entry is counted once.
    """
    from torch.distributed.tensor import Replicate, Shard

    mesh = param.device_mesh
    coord = mesh.get_coordinate()
    if coord is None:  # this rank is not in the mesh: it holds nothing
        return False, (0,), {}
    shape = list(param.shape)
    ranges = {}
    contributes = True
    for mesh_dim, placement in enumerate(param.placements):
        c = coord[mesh_dim]
        size = mesh.size(mesh_dim)
        if isinstance(placement, Shard) and type(placement) is Shard:
            d = placement.dim % len(shape)
            if d in ranges:
                raise NotImplementedError(f"DTensor sharded twice along dim {d} ({param.placements}) is not "
                                          f"supported by UpdateRecorder")
            n = shape[d]
            chunk = -(-n // size)
            lo = min(c * chunk, n)
            ranges[d] = (lo, min(lo + chunk, n))
        elif isinstance(placement, Replicate):
            contributes = contributes and c == 0
        else:
            raise NotImplementedError(f"DTensor placement {placement!r} is not supported by UpdateRecorder "
                                      f"(supported: Shard(d), Replicate())")
    local_shape = tuple(ranges[d][1] - ranges[d][0] if d in ranges else n for d, n in enumerate(shape))
    actual = tuple(param.to_local().shape)
    if actual != local_shape:
        raise NotImplementedError(f"unexpected DTensor layout: local shard has shape {actual}, expected "
                                  f"{local_shape} for placements {param.placements}")
    return contributes, local_shape, ranges


class _Tracked:
    """One tracked parameter and what this rank keeps for it."""

    __slots__ = ("name", "param", "group", "shape", "numel", "sharded", "contributes", "local_shape",
                 "local_numel", "sample_global", "sample_local", "sample_cols", "snap", "index")

    def local(self, tensor):
        return tensor.to_local() if self.sharded else tensor


class _Chunk:
    """Tensors of one param group and dtype whose statistics the torch route computes in one batch.

    Their snapshots are views into one flat buffer, so after the in-place
    difference the updates of all of them are already concatenated.
    """

    __slots__ = ("group", "members", "flat", "batch")


def _chunks_of(tracked):
    """Consecutive runs of tensors with the same group and dtype, each of at most ``_CHUNK_ENTRIES`` entries
    (or one larger tensor alone)."""
    budget = _CHUNK_ENTRIES
    out, run, size, run_key = [], [], 0, None
    for t in tracked:
        key = (t.group, t.local(t.param).dtype)
        n = t.local_numel
        if run and (key != run_key or size + n > budget):
            out.append(run)
            run, size = [], 0
        run_key = key
        run.append(t)
        size += n
    if run:
        out.append(run)
    return out


def select_parameters(optimizer, params=None, module=None) -> list:
    """The parameters a recorder tracks: ``[(name, parameter, param-group index), ...]``.

    ``params``: a module (its named parameters that ``optimizer`` holds), a dict
    name -> parameter, a sequence of names looked up in ``module``, or ``None``
    (every parameter of the optimizer, named ``"group{g}.{i}"``). A parameter
    selected twice, or not held by the optimizer, raises ``ValueError``.
    """
    import torch

    where = {}
    for g, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            where[id(p)] = g
    if params is None:
        named = [(f"group{g}.{i}", p) for g, group in enumerate(optimizer.param_groups)
                 for i, p in enumerate(group["params"])]
    elif isinstance(params, torch.nn.Module):
        if module is not None:
            raise TypeError("pass either params=<module> or params=<names> with module=<module>, not both")
        named = [(n, p) for n, p in params.named_parameters() if id(p) in where]
        if not named:
            raise ValueError("none of the module's parameters is in the optimizer")
    elif isinstance(params, Mapping):
        named = list(params.items())
        for n, p in named:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"params[{n!r}] must be a tensor, got {type(p).__name__}")
    elif isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"params must be a module, a dict name -> parameter, a list of names (with "
                        f"module=...) or None, got {type(params).__name__}")
    else:
        names = list(params)
        if module is None:
            raise ValueError("params is a list of names: pass the module that holds them as module=...")
        table = dict(module.named_parameters())
        missing = [n for n in names if n not in table]
        if missing:
            raise ValueError(f"parameter names {missing} are not in the module; it has e.g. "
                             f"{list(table)[:8]}")
        named = [(n, table[n]) for n in names]
    if not named:
        raise ValueError("params selects no parameter")
    selected, seen_names, seen_ids = [], set(), set()
    for name, p in named:
        name = str(name)
        if name in seen_names or id(p) in seen_ids:
            raise ValueError(f"parameter {name!r} is selected twice")
        seen_names.add(name)
        seen_ids.add(id(p))
        if id(p) not in where:
            raise ValueError(f"parameter {name!r} (shape {tuple(p.shape)}) is not in the optimizer's "
                             f"param_groups")
        selected.append((name, p, where[id(p)]))
    return selected


class UpdateRecorder:
    r"""Record :math:`u_t = (\theta_t - \theta_{t-1})/\eta_t` of a live optimizer.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer (Adam, AdamW, RMSprop, Adagrad, SGD, ...). Its behaviour
        is unchanged: the hooks only read parameters and gradients.
    params : torch.nn.Module, dict, sequence of str, or None
        What to track. A module: all its named parameters that the optimizer
        holds (frozen ones it does not hold are skipped). A dict name ->
        parameter. A sequence of parameter names, looked up in ``module``.
        ``None``: every parameter of the optimizer, named ``"group{g}.{i}"``.
    module : torch.nn.Module, optional
        Where names are looked up when ``params`` is a sequence of names.
    steps : int or iterable of int, optional
        Which optimizer steps to record, counted from 1 at the first step after
        :meth:`attach` (attach before training for these to be the paper's
        :math:`m`; ``metadata["optimizer_steps_before_attach"]`` reports the
        optimizer's own step count at attach time when its state has one). An int ``N`` records steps ``1..N``; an iterable names
        steps (e.g. ``range(1, 1001, 10)``). Default: the first
        :data:`DEFAULT_STEPS` (100). Capacity is preallocated; other steps
        cost two no-op hook calls.
    bins : int or array_like, optional
        Histogram edges: an int gives that many uniform bins on :math:`[-4, 4]`
        (:func:`adamdist.results.default_edges`; it covers the support
        :math:`|u| \le \sqrt m` of Theorem 1 for :math:`m \le 16` and 4
        standard deviations of its Gaussian limit, eq. 31), or strictly
        increasing edges. Values outside land in under/overflow counts.
    sample_size : int
        Coordinates of each tensor whose exact values are kept every step (the
        same coordinates at every step), for Kolmogorov-Smirnov comparisons.
    seed : int
        Seeds the choice of sampled coordinates, in ``[0, 2**63 - 1]``.
    record_grad : bool
        Also record the raw gradient used by the step (``result("grad")``),
        read right after the step, so that a closure's gradient is the one
        recorded (torch's optimizers never change ``grad`` in place).
    grad_bins : int or array_like, optional
        Histogram edges for the gradient (default: ``bins``).
    all_ranks : bool
        Under ``torch.distributed``: record replicated (non-DTensor)
        parameters on every rank rather than on rank 0 only.

    Notes
    -----
    *Cost.* Per recorded step: one multi-tensor copy into preallocated
    snapshots (pre-hook), then the statistics. On a GPU (post-hook): one
    multi-tensor subtraction, then per chunk of up to 4M entries (tensors of
    one param group and dtype, whose snapshots are views of one flat buffer)
    a division and about 50 device-side operations of
    :class:`~adamdist.results.DeviceBatch` (segment reductions, one
    histogram scatter), however many tensors the chunk holds; no ``.item()``,
    ``.cpu()`` or ``float(tensor)`` runs inside the step, also for tensor
    learning rates (they divide on the device). On the CPU, contiguous
    float32/float64 tensors instead go to adamdist's compiled kernel in one
    call per step, which reads snapshot and parameter once and evaluates
    ``(snapshot - theta) / (-lr)`` in the parameter's dtype, exactly as the
    torch route does, without writing it out (other tensors take the torch
    route). Memory: one snapshot per tracked parameter
    plus ``O(steps * (bins + sample_size))`` per tensor; all of it is freed
    by :meth:`detach`, after the (small) statistics were copied to the host.
    The torch route also needs, during the post-hook, temporaries of about
    40 bytes per entry of its largest chunk (4M entries, or the largest
    tensor when that is bigger).

    *Memory check.* :meth:`attach` estimates the buffers above before it
    allocates them and raises a ``ValueError`` naming ``steps`` (and
    ``bins``, ``sample_size``) when they would not fit in the memory left on
    the parameters' device.

    *Faults in the training loop.* The hooks never raise into the step. A
    step that raises (a failing closure, an interrupted batch) is not counted:
    recorded step numbers are the optimizer steps that completed, and the
    next completed step takes the row. Param groups added with
    ``add_param_group`` after :meth:`attach` are not tracked (one
    ``RuntimeWarning``); ``load_state_dict`` keeps working. Should anything
    inside a hook fail all the same, the recorder stops recording, warns,
    and :meth:`result` returns the steps recorded before, with a
    ``RuntimeWarning`` and ``metadata["recording_error"]``.

    *Missing gradients.* A tracked tensor whose ``grad`` is ``None`` at a
    step (frozen, or unused in that forward pass) has no update there: the
    row is flagged in the result's ``no_grad`` (and ``to_frame("moments")``)
    and left out of comparisons with a law.

    *Half precision.* A float16/bfloat16 parameter whose learning rate is
    below the dtype's resolution keeps most entries unchanged, so most
    recorded updates are exactly 0; :meth:`result` warns once, with the share
    of exact zeros among the sampled coordinates (none with
    ``sample_size=0``).

    *Learning rate 0.* A group whose rate is 0 at a step has no defined
    update: its entries are NaN (counted in ``nonfinite``) and the step is
    listed under ``metadata["lr_zero_steps"]``, rather than a division by 0.

    *Distributed.* With DDP, rank 0 alone records (``all_ranks=False``):
    :meth:`result` returns the statistics on rank 0 and ``None`` on other
    ranks, unless ``broadcast=True`` is passed on every rank, which sends rank
    0's result to all. With FSDP2 (DTensor parameters) every rank records its
    shard and :meth:`result` is a collective (call it on every rank, like any
    ``torch.distributed`` operation): it returns the whole-tensor statistics
    on every rank. The gather happens only then, never during training.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(64, 8)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.999))
    >>> with UpdateRecorder(opt, model, steps=3) as rec:
    ...     for _ in range(3):  # the user's training loop, unchanged
    ...         opt.zero_grad()
    ...         model(torch.randn(16, 64)).pow(2).mean().backward()
    ...         opt.step()
    >>> stats = rec.result()
    >>> sorted(stats.names), sorted(set(stats.steps.tolist()))
    (['bias', 'weight'], [1, 2, 3])
    >>> moments = stats.to_frame("moments")
    >>> bool((moments.query("step == 1 and name == 'weight'")["abs_var"] < 1e-6).all())  # |u_1| = 1 up to eps
    True
    """

    def __init__(self, optimizer, params=None, *, module=None, steps=None, bins=None, sample_size: int = 2000,
                 seed: int = 0, record_grad: bool = False, grad_bins=None, all_ranks: bool = False):
        import torch

        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.steps = _resolve_steps(steps)
        self.edges = _resolve_edges(bins, "bins")
        self.grad_edges = self.edges if grad_bins is None else _resolve_edges(grad_bins, "grad_bins")
        self.sample_size = check_int(sample_size, "sample_size", low=0)
        self.seed = check_seed(seed, "seed")
        self.record_grad = bool(record_grad)
        self.all_ranks = bool(all_ranks)
        self.rank, self.world_size = _dist_info()
        self._tracked = self._track(select_parameters(optimizer, params, module))
        self._state = "new"
        self._handles = []
        self._acc = {}
        # per kind: sampled values in global coordinates, and sums of |x| for Chan's combination of shards
        self._samples = {}
        self._sample_buf = {}
        self._abs_sum = {}
        self._lone = {}  # id(tracked) -> its own DeviceBatch, for a gradient its batch cannot take
        self._host = None
        self._step = 0
        self._rows = 0
        self._active = None
        self._pending = False  # a pre-hook ran whose post-hook has not (yet)
        self._error = None  # the exception that stopped recording inside a hook, if any
        self._warned_groups = False
        self._warned_half = False
        self._hyper = [{k: _jsonable(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]

    # -- set-up -----------------------------------------------------------------
    def _track(self, selected) -> list:
        """Where each selected parameter lives (group, shard) and which of its coordinates are sampled."""
        tracked = []
        for name, p, group in selected:
            t = _Tracked()
            t.name, t.param, t.group = name, p, group
            t.shape, t.numel = tuple(p.shape), p.numel()
            t.sharded = _is_dtensor(p)
            if t.sharded:
                t.contributes, t.local_shape, ranges = _shard_layout(p)
            else:
                # DDP replicas are identical after the step: one rank is enough
                t.contributes = self.all_ranks or self.rank == 0
                t.local_shape, ranges = t.shape, {}
            t.sample_global = _sample_coordinates(name, t.numel, self.sample_size, self.seed)
            t.local_numel = int(np.prod(t.local_shape))
            t.sample_cols, t.sample_local = _local_sample(t.sample_global, t.shape, t.local_shape, ranges)
            tracked.append(t)
        return tracked

    @property
    def names(self) -> tuple:
        """Tracked names, in the order of the result's ``names``."""
        return tuple(t.name for t in self._tracked)

    @property
    def completed_steps(self) -> int:
        """Optimizer steps completed since :meth:`attach` (recorded or not; a step that raised is not one)."""
        return self._step - (1 if self._pending else 0)

    @property
    def sample_indices(self) -> dict:
        """Global flat indices (into ``param.view(-1)``) of the sampled coordinates, per name."""
        return {t.name: t.sample_global.copy() for t in self._tracked}

    def attach(self) -> "UpdateRecorder":
        """Allocate the buffers and register the hooks. A recorder attaches once."""
        import torch

        if self._state != "new":
            raise RuntimeError(f"this recorder is already {self._state}; create a new UpdateRecorder")
        self._state = "attached"
        mine = [t for t in self._tracked if t.contributes]
        if not mine:  # e.g. DDP rank > 0: no buffers, no hooks, no cost
            return self
        devices = {t.local(t.param).device for t in mine}
        if len(devices) > 1:
            raise NotImplementedError(f"tracked parameters live on several devices {sorted(map(str, devices))}; "
                                      f"use one recorder per device")
        self.device = devices.pop()
        n = len(self.steps)
        kinds = _KINDS if self.record_grad else _KINDS[:1]
        check_memory(self._buffer_bytes(mine, len(kinds)), f"UpdateRecorder's buffers for {n} recorded steps",
                     "steps (the number of recorded steps), bins or sample_size", device=self.device)
        for kind in kinds:
            edges = self.edges if kind == "update" else self.grad_edges
            # sample_size=0: the recorder keeps the samples itself, in global coordinates (see _local_sample)
            acc = StatsAccumulator(self.names, [0 if not t.contributes else t.local_numel
                                                for t in self._tracked], n, edges, sample_size=0,
                                   seed=self.seed, device=self.device)
            f64 = dict(dtype=torch.float64, device=self.device)
            # zeros, not NaN: in a sharded result every column is owned by one rank and the others add 0.
            # One buffer, a column range per tensor: a batch writes all its tensors' samples at once.
            widths = np.array([t.sample_global.size for t in self._tracked], dtype=np.int64)
            self._sample_base = np.concatenate([[0], np.cumsum(widths)])
            self._sample_buf[kind] = torch.zeros((n, int(widths.sum())), **f64)
            self._samples[kind] = [self._sample_buf[kind][:, b:b + w] for b, w in zip(self._sample_base, widths)]
            self._abs_sum[kind] = torch.zeros((n, len(self._tracked)), **f64)
            self._acc[kind] = acc
        for t in mine:
            t.index = self.names.index(t.name)
            t.snap = None
            t.sample_local = torch.as_tensor(t.sample_local, device=self.device)
            t.sample_cols = torch.as_tensor(t.sample_cols, device=self.device)
        self._mine = mine
        self._native = {kind: self._native_batches(kind) for kind in kinds}
        native = {id(t) for b in self._native["update"] for t in b[1]}
        for t in mine:
            if id(t) in native:
                t.snap = torch.empty_like(t.local(t.param), memory_format=torch.contiguous_format)
        # the torch route (other devices and dtypes, no compiler): a fixed number of launches per chunk
        self._chunks = [self._make_chunk(members, kinds) for members in
                        _chunks_of([t for t in mine if id(t) not in native])]
        # groups that exist at attach: the lr table and the tracked tensors refer to them alone
        self._n_groups = len(self.optimizer.param_groups)
        self._lr = torch.full((n, self._n_groups), float("nan"), dtype=torch.float64, device=self.device)
        self._no_grad = np.zeros((n, len(self._tracked)), dtype=bool)
        self._mine_index = np.array([t.index for t in mine], dtype=np.int64)
        # steps are counted from the attach; say so when the optimizer had already stepped (then the recorded
        # step numbers are not the paper's m). Read here, outside any step: a tensor "step" may sync.
        state = self.optimizer.state.get(mine[0].param, {})
        self._steps_before = _jsonable(state["step"]) if "step" in state else None
        self._handles = [self.optimizer.register_step_pre_hook(self._pre_hook),
                         self.optimizer.register_step_post_hook(self._post_hook)]
        return self

    def _buffer_bytes(self, mine, n_kinds: int) -> int:
        """Upper bound on what :meth:`attach` allocates: statistics rows, snapshots, torch-route temporaries."""
        n, names = len(self.steps), len(self._tracked)
        widths = max(self.edges.size, self.grad_edges.size) + 1  # histogram row with under/overflow
        samples = sum(t.sample_global.size for t in self._tracked)
        per_kind = n * (names * (widths + 4 + 2 + 1) + samples) * 8  # hist, moments, counts, |x| sums; samples
        numels = [t.local_numel for t in mine]
        snapshots = sum(k * t.param.element_size() for k, t in zip(numels, mine))
        temporaries = 40 * min(sum(numels), max(_CHUNK_ENTRIES, max(numels)))
        return n_kinds * per_kind + n * len(self.optimizer.param_groups) * 8 + snapshots + temporaries

    def _make_chunk(self, members, kinds):
        import torch

        c = _Chunk()
        c.group, c.members = members[0].group, members
        offsets = np.cumsum([0] + [t.local_numel for t in members])
        c.flat = torch.empty(int(offsets[-1]), dtype=members[0].local(members[0].param).dtype, device=self.device)
        for t, o in zip(members, offsets):
            t.snap = c.flat[o:o + t.local_numel].view(t.local_shape)
        c.batch = {kind: self._device_batch(kind, members) for kind in kinds}
        return c

    def _device_batch(self, kind, members):
        """The torch route's work order for ``members``, whose values arrive concatenated in this order."""
        import torch

        offsets = np.cumsum([0] + [t.local_numel for t in members])
        src = torch.cat([t.sample_local + int(o) for t, o in zip(members, offsets)])
        dst = torch.cat([t.sample_cols + int(self._sample_base[t.index]) for t in members])
        return self._acc[kind].device_batch(
            [t.index for t in members], [t.local_numel for t in members],
            samples=(src, self._sample_buf[kind], dst) if src.numel() else None,
            abs_sum=self._abs_sum[kind] if any(t.sharded for t in members) else None)

    def _native_batches(self, kind):
        """(batch, members, groups) per dtype: tensors the compiled kernel summarises in one call per step.

        Only contiguous float32/float64 CPU tensors qualify (the kernel reads
        parameter and snapshot in the same linear order); the others, and all
        of them when the kernel is unavailable, take the torch route.
        """
        import torch

        if self.device.type != "cpu":
            return []
        acc = self._acc[kind]
        out = []
        for dtype in (torch.float32, torch.float64):
            members = [t for t in self._mine if t.local(t.param).dtype == dtype and t.local(t.param).is_contiguous()]
            if not members:
                continue
            batch = acc.native_batch(
                [t.index for t in members], [t.local_numel for t in members], dtype,
                samples=[(t.sample_local, t.sample_cols, self._samples[kind][t.index]) for t in members],
                abs_sum=self._abs_sum[kind] if any(t.sharded for t in members) else None)
            if batch is None:
                return []
            out.append((batch, members, np.array([t.group for t in members])))
        return out

    def detach(self) -> None:
        """Remove the hooks and free every buffer (the statistics are copied to the host first)."""
        if self._state != "attached":
            return
        for h in self._handles:
            h.remove()
        self._handles = []
        self._host = self._local_host()
        self._acc, self._samples, self._sample_buf, self._abs_sum, self._native, self._lone = {}, {}, {}, {}, {}, {}
        self._lr = None
        for t in self._tracked:
            t.snap = None
        self._mine = []
        self._chunks = []
        self._state = "detached"

    def __enter__(self) -> "UpdateRecorder":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    # -- the hooks (hot path: device work only) --------------------------------
    def _pre_hook(self, optimizer, args, kwargs):
        if self._error is None:
            try:
                self._before_step(optimizer)
            except Exception as exc:  # never into the user's step
                self._stop(exc)

    def _post_hook(self, optimizer, args, kwargs):
        if self._error is None:
            try:
                self._after_step(optimizer)
            except Exception as exc:
                self._stop(exc)

    def _stop(self, exc) -> None:
        """Stop recording after a fault inside a hook; :meth:`result` reports it."""
        self._error = exc
        self._active = None
        _warn_quietly(f"UpdateRecorder stopped recording at optimizer step {self._step} after an error in its "
                      f"hook ({_describe(exc)}); training goes on, result() has the steps before")

    def _before_step(self, optimizer):
        import torch

        if self._pending:
            # the last step raised before its post-hook: it did not happen (nothing of it was recorded but the
            # snapshot, which is taken again below)
            self._step -= 1
        if len(optimizer.param_groups) != self._n_groups and not self._warned_groups:
            self._warned_groups = True
            _warn_quietly(f"UpdateRecorder: the optimizer has {len(optimizer.param_groups)} param groups, "
                          f"{self._n_groups} at attach; parameters of groups added since are not recorded "
                          f"(attach a new recorder to record them)")
        self._step += 1
        self._pending = True
        slot = bisect.bisect_left(self.steps, self._step)  # steps is sorted (a list or a range)
        self._active = slot = slot if slot < len(self.steps) and self.steps[slot] == self._step else None
        if slot is None:
            return
        with torch.no_grad():
            # theta_{t-1}; one multi-tensor launch where the backend has it
            torch._foreach_copy_([t.snap for t in self._mine], [t.local(t.param) for t in self._mine])

    def _record_grads(self, slot):
        import torch

        done = set()
        for batch, members, _ in self._native["grad"]:
            grads = [t.param.grad for t in members]
            if all(g is not None and t.local(g).is_contiguous() and t.local(g).dtype == t.snap.dtype
                   for g, t in zip(grads, members)):
                batch.run(slot, [t.local(g) for g, t in zip(grads, members)])
                done.update(id(t) for t in members)
        for c in self._chunks:
            grads = [t.param.grad for t in c.members]
            if all(g is not None for g in grads):
                c.batch["grad"].run(slot, torch.cat([t.local(g).reshape(-1) for g, t in zip(grads, c.members)]))
                done.update(id(t) for t in c.members)
        for t in self._mine:  # a batch with a missing or unusual gradient: its other tensors one by one
            grad = t.param.grad
            if grad is not None and id(t) not in done:
                if id(t) not in self._lone:
                    self._lone[id(t)] = self._device_batch("grad", [t])
                self._lone[id(t)].run(slot, t.local(grad).reshape(-1))

    def _after_step(self, optimizer):
        import torch

        self._pending = False
        slot = self._active
        if slot is None:
            return
        self._active = None
        tracked_groups = optimizer.param_groups[:self._n_groups]
        # after the step, not before: a closure computes the gradient inside it
        self._no_grad[slot, self._mine_index] = [t.param.grad is None for t in self._mine]
        with torch.no_grad():
            if self.record_grad:
                self._record_grads(slot)
            for g, group in enumerate(tracked_groups):
                self._lr[slot, g].fill_(group["lr"])
            if self._native["update"]:
                # the kernel evaluates (snap - theta_t) / (-lr) itself, as the torch route below does;
                # the kernel runs on the CPU only, where float(lr) of a tensor rate waits for nothing
                lrs = np.array([float(group["lr"]) for group in tracked_groups])
                neg_lr = np.where(lrs == 0, np.nan, -lrs)
                for batch, members, groups in self._native["update"]:
                    batch.run(slot, [t.local(t.param) for t in members], before=[t.snap for t in members],
                              neg_lr=neg_lr[groups])
            if not self._chunks:
                return self._finish_step(slot)
            # snap <- theta_{t-1} - theta_t; dividing by -lr below gives (theta_t - theta_{t-1}) / lr
            # bit for bit (IEEE negation is exact), with one pass less than a separate neg_()
            torch._foreach_sub_([t.snap for c in self._chunks for t in c.members],
                                [t.local(t.param) for c in self._chunks for t in c.members])
            for c in self._chunks:
                lr = optimizer.param_groups[c.group]["lr"]
                if isinstance(lr, torch.Tensor):
                    # float(lr) would wait for a device: keep the zero test there too (x / NaN is NaN).
                    # CPU tensors take the same route, so the tests on the CPU exercise it.
                    c.flat.div_(torch.where(lr == 0, float("nan"), -lr))
                elif float(lr) == 0:
                    c.flat.fill_(float("nan"))  # undefined, not +-inf from a division by 0
                else:
                    c.flat.div_(-float(lr))
                c.batch["update"].run(slot, c.flat)
        self._finish_step(slot)

    def _finish_step(self, slot):
        for a in self._acc.values():
            a.set_step(slot, self._step)
        self._rows = slot + 1

    # -- results ----------------------------------------------------------------
    def _split_samples(self, block):
        return [np.ascontiguousarray(block[:, b:e]) for b, e in zip(self._sample_base[:-1], self._sample_base[1:])]

    def _local_host(self, first: int = 0) -> dict:
        """This rank's partial statistics of rows ``first..``, on the host (one transfer per buffer)."""
        out = {}
        rows = slice(first, self._rows)
        for kind, acc in self._acc.items():
            stats = acc.result(n_rows=self._rows, first_row=first)
            out[kind] = {
                "stats": stats,
                "samples": self._split_samples(self._sample_buf[kind][rows].cpu().numpy()),
                "abs_sum": self._abs_sum[kind][rows].cpu().numpy(),
                "lr": self._lr[rows].cpu().numpy(),
                "no_grad": self._no_grad[rows].copy(),
            }
        return out

    def _first_row_after(self, since) -> int:
        if since is None:
            return 0
        since = check_int(since, "since", low=0)
        return bisect.bisect_right(self.steps, since, 0, self._rows)  # recorded rows are self.steps[:_rows]

    def result(self, kind: str = "update", *, broadcast: bool = False, since: int | None = None
               ) -> UpdateStats | None:
        """The recorded statistics as :class:`~adamdist.results.UpdateStats`.

        Parameters
        ----------
        kind : {"update", "grad"}
            ``"grad"`` needs ``record_grad=True``.
        broadcast : bool
            Distributed runs: also return the result on ranks that did not
            record (a collective: call it on every rank).
        since : int, optional
            Only the steps recorded after optimizer step ``since`` (what a
            logger has not seen yet): only those rows are copied to the host,
            so that logging every k steps does not copy the whole run again.

        Returns
        -------
        UpdateStats or None
            ``None`` on a rank that recorded nothing when no collective was
            asked for (DDP ranks > 0 by default). Rows are the steps recorded
            so far.

        Warns
        -----
        RuntimeWarning
            When a fault inside a hook stopped the recording: the result
            holds the steps recorded before it, and
            ``metadata["recording_error"]`` names the error. Also (once) when
            most sampled updates of a float16/bfloat16 tensor are exactly 0.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if kind == "grad" and not self.record_grad:
            raise ValueError("kind='grad' needs UpdateRecorder(..., record_grad=True)")
        if self._state == "new":
            raise RuntimeError("the recorder was never attached: use it as a context manager or call attach()")
        first = self._first_row_after(since)
        local = _host_rows(self._host, first) if self._state == "detached" else self._local_host(first)
        sharded = any(t.sharded for t in self._tracked)
        if self.world_size > 1 and (sharded or broadcast):
            import torch.distributed as dist

            parts = [None] * self.world_size
            dist.all_gather_object(parts, (local.get(kind), [t.contributes for t in self._tracked]))
            return self._combine(kind, parts)
        part = local.get(kind)
        if part is None:
            return None
        return self._finish(kind, part["stats"], part["samples"], part["lr"], part["no_grad"], ranks=[self.rank])

    def _combine(self, kind, parts) -> UpdateStats | None:
        """Whole-tensor statistics from every rank's partial ones."""
        n_names = len(self._tracked)
        have = [(r, p) for r, (p, _) in enumerate(parts) if p is not None]
        if not have:
            return None
        base = have[0][1]
        rows = base["stats"].steps.size
        arrays = {f: np.array(getattr(base["stats"], f), copy=True) for f in
                  ("count", "nonfinite", "mean", "var", "abs_var", "skew", "hist", "underflow", "overflow")}
        samples = [np.array(s, copy=True) for s in base["samples"]]
        no_grad = np.array(base["no_grad"], copy=True)
        for j, t in enumerate(self._tracked):
            # replicated tensors: the lowest recording rank's copy (identical on all ranks under DDP);
            # sharded ones: every contributing rank's shard
            owners = [(r, p) for r, p in have if parts[r][1][j]]
            if not owners:
                continue
            if not t.sharded:
                owners = owners[:1]
            for f, column in merge_shards([(p["stats"], p["abs_sum"]) for _, p in owners], j).items():
                arrays[f][:, j] = column
            samples[j] = sum(p["samples"][j] for _, p in owners)
            no_grad[:, j] = np.any([p["no_grad"][:, j] for _, p in owners], axis=0)
        stats = UpdateStats(steps=base["stats"].steps, names=self.names, edges=base["stats"].edges,
                            samples={}, metadata={}, **arrays)
        assert rows == stats.steps.size and len(samples) == n_names
        return self._finish(kind, stats, samples, base["lr"], no_grad, ranks=[r for r, _ in have])

    def _finish(self, kind, stats, samples, lr, no_grad, ranks) -> UpdateStats:
        import torch

        steps = stats.steps.tolist()
        lr_zero = {}
        for t in self._tracked:
            hit = [s for s, row in zip(steps, lr) if row[t.group] == 0]
            if hit:
                lr_zero[t.name] = hit
        metadata = {
            "source": "adamdist.capture.UpdateRecorder",
            "kind": kind,
            "definition": ("(theta_t - theta_{t-1}) / lr_t, lr_t the group's rate at step t" if kind == "update"
                           else "gradient seen by optimizer.step()"),
            "optimizer": f"{type(self.optimizer).__module__}.{type(self.optimizer).__name__}",
            "hyperparameters": self._hyper,
            "param_group": {t.name: t.group for t in self._tracked},
            "shapes": {t.name: list(t.shape) for t in self._tracked},
            "dtypes": {t.name: str(t.param.dtype).replace("torch.", "") for t in self._tracked},
            "sharded": [t.name for t in self._tracked if t.sharded],
            "lr_by_step": {str(s): [None if np.isnan(v) else float(v) for v in row] for s, row in zip(steps, lr)},
            "lr_zero_steps": lr_zero,
            "optimizer_steps_before_attach": getattr(self, "_steps_before", None),
            "torch_version": torch.__version__,
            "device": str(getattr(self, "device", "cpu")),
            "world_size": self.world_size,
            "recorded_on_ranks": ranks,
            "seed": self.seed,
            "sample_size": self.sample_size,
        }
        if self._error is not None:
            metadata["recording_error"] = _describe(self._error)
            warnings.warn(f"UpdateRecorder stopped recording after step {stats.steps[-1] if stats.steps.size else 0}"
                          f" ({metadata['recording_error']}); the result holds the steps recorded before",
                          RuntimeWarning, stacklevel=3)
        if kind == "update":
            self._warn_half_precision_zeros(samples, no_grad)
        return UpdateStats(steps=stats.steps, names=stats.names, edges=stats.edges, count=stats.count,
                           mean=stats.mean, var=stats.var, abs_var=stats.abs_var, skew=stats.skew,
                           nonfinite=stats.nonfinite, hist=stats.hist, underflow=stats.underflow,
                           overflow=stats.overflow, samples=dict(zip(self.names, samples)), metadata=metadata,
                           no_grad=no_grad)

    def _warn_half_precision_zeros(self, samples, no_grad) -> None:
        """Once: half-precision tensors whose sampled updates are mostly exact zeros (the step rounded away)."""
        import torch

        if self._warned_half:
            return
        shares = {}
        for j, t in enumerate(self._tracked):
            if t.param.dtype not in (torch.float16, torch.bfloat16):
                continue
            values = samples[j][~no_grad[:, j]]
            values = values[np.isfinite(values)]
            if values.size and np.mean(values == 0) > 0.5:
                shares[t.name] = (float(np.mean(values == 0)), str(t.param.dtype).replace("torch.", ""),
                                  self._hyper[t.group].get("lr"))
        if shares:
            self._warned_half = True
            listed = ", ".join(f"{n} ({share:.1%} of them, {dtype}, lr {lr})"
                               for n, (share, dtype, lr) in shares.items())
            warnings.warn(f"most recorded updates of these half-precision tensors are exactly 0: {listed}. The "
                          f"learning rate times the update is below the dtype's resolution at the parameters' "
                          f"magnitude, so the step rounds away; keep float32 master weights (mixed precision) "
                          f"or use a larger learning rate", RuntimeWarning, stacklevel=4)


def _host_rows(host: dict, first: int) -> dict:
    """The host copy of a detached recorder's statistics, from row ``first`` on."""
    if first == 0:
        return host
    out = {}
    for kind, part in host.items():
        stats = part["stats"]
        out[kind] = {"stats": stats.select(steps=stats.steps[first:].tolist()),
                     "samples": [s[first:] for s in part["samples"]],
                     **{f: part[f][first:] for f in ("abs_sum", "lr", "no_grad")}}
    return out


def _describe(exc: BaseException) -> str:
    """``"Type: message"``, also for an exception whose own ``str()`` fails (a hook must not raise)."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__} (its message could not be formatted)"


def _warn_quietly(message: str) -> None:
    """A RuntimeWarning from inside a hook, where even a warning turned into an error (``-W error``) must not
    escape into the user's step."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    except Exception:
        pass


def _is_dtensor(tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover
        return False
    return isinstance(tensor, DTensor)


def _local_sample(global_idx: np.ndarray, shape, local_shape, ranges):
    """Which sampled global coordinates this rank holds: (columns, local flat indices)."""
    if not ranges:
        return np.arange(global_idx.size, dtype=np.int64), global_idx
    if global_idx.size == 0 or int(np.prod(local_shape)) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    multi = list(np.unravel_index(global_idx, shape))
    keep = np.ones(global_idx.size, dtype=bool)
    for d, (lo, hi) in ranges.items():
        keep &= (multi[d] >= lo) & (multi[d] < hi)
        multi[d] = multi[d] - lo
    cols = np.flatnonzero(keep)
    local = np.ravel_multi_index([m[keep] for m in multi], local_shape) if cols.size else np.zeros(0, np.int64)
    return cols.astype(np.int64), np.asarray(local, dtype=np.int64)


# -- comparisons ------------------------------------------------------------------------------------------
#: simulate's optimizers that Theorem 1 describes besides Adam: the paper's eqs. 1-4 and its simple average
_ADAM_LIKE = {"laprop", "average"}
#: Adam's relatives whose update differs from Adam's (Nesterov momentum, rectification, infinity norm)
_NOT_ADAM = ("nadam", "radam", "adamax")


def _is_adam_like(name: str) -> bool:
    """Adam by its (lowercase) name: Adam, AdamW and vendors' ones (FusedAdam, FairseqAdam, AdamW8bit, ...)."""
    return name in _ADAM_LIKE or ("adam" in name and not any(other in name for other in _NOT_ADAM))


def _warn_unless_adam(stats: UpdateStats) -> None:
    recorded = stats.metadata.get("optimizer")
    if recorded is None:
        return  # statistics made by hand: nothing says what produced them
    name = str(recorded).rsplit(".", 1)[-1].lower()
    if not _is_adam_like(name):
        warnings.warn(f"this run's optimizer is {recorded}, but Theorem 1 and the exact laws describe Adam's "
                      f"update (and the simple average): the comparison measures how far {name} is from Adam's "
                      f"law, not how well a theory of {name} fits", UserWarning, stacklevel=3)


def _recorded_betas(stats: UpdateStats):
    groups = stats.metadata.get("hyperparameters") or [{}]
    betas = {tuple(g["betas"]) for g in groups if "betas" in g}
    if len(betas) > 1:
        raise ValueError(f"param groups have different betas {sorted(betas)}; pass them explicitly")
    return betas.pop() if betas else None


def predicted_law(stats: UpdateStats, beta2: float | None = None, *, exact: bool = False,
                  beta1: float | None = None):
    r"""Per-step law predicted for a recorded Adam-family run, as ``law(m)``.

    Two routes:

    * ``exact=False`` (default, fast): Theorem 1. It assumes no momentum
      (:math:`\beta_1 = 0`), :math:`\epsilon = 0` and a *simple* average of
      squared gradients. Adam averages with weights
      :math:`w_i \propto \beta_2^{m-i}` (eqs. 8-9) instead; we use Theorem 1
      at the Kish effective number of samples
      :math:`m_{\mathrm{eff}} = 1/\sum_i w_i^2`
      (:func:`adamdist.theory.ema_effective_samples`), which equals :math:`m`
      while :math:`m \ll 1/(1-\beta_2)` (to 0.01% for :math:`m \le 30`,
      :math:`\beta_2 = 0.999`) and gives the exact two-point law for
      :math:`\beta_2 = 0`. In between it is an approximation.
    * ``exact=True``: :func:`adamdist.exact.update_distribution` with the run's
      :math:`(\beta_1, \beta_2)`, the exact law of PyTorch's Adam update for
      i.i.d. standard Gaussian gradients, momentum included. About a second
      per step on a CPU, so meant for a few chosen steps.

    Both assume zero-mean gradients, for which the law is symmetric, so the
    sign convention of the recorded :math:`u` (:math:`+\Delta\theta/\eta`,
    the negative of Adam's direction) does not matter. Weight decay (AdamW) and
    :math:`\epsilon` are not modelled.

    A run whose recorded optimizer (``metadata["optimizer"]``) is not
    Adam-like is compared all the same, with a ``UserWarning``. Adam-like:
    a class name containing "Adam" (Adam, AdamW,
    :class:`adamdist.optim.FairseqAdam`, vendors' FusedAdam or AdamW8bit),
    except NAdam, RAdam and Adamax, and simulate's ``"laprop"`` (the paper's
    eqs. 1-4) and ``"average"``; SGD, RMSprop, Adagrad, Lion, ... are not.

    Parameters
    ----------
    stats : UpdateStats
        A recorder result; the betas are read from its metadata when not given.
    beta2, beta1 : float, optional
        Override the recorded ``betas``. With ``exact=False``, ``beta2=None``
        and no recorded betas mean the simple average of Theorem 1.
    exact : bool
        Use :mod:`adamdist.exact` (see above).
    """
    from . import theory

    _warn_unless_adam(stats)
    recorded = _recorded_betas(stats)
    if beta1 is None:
        beta1 = recorded[0] if recorded else 0.0
    if beta2 is None and recorded:
        beta2 = recorded[1]
    if exact:
        from . import exact as exact_laws

        b1, b2 = float(beta1), 0.999 if beta2 is None else float(beta2)
        return lambda m: exact_laws.update_distribution(int(m), beta1=b1, beta2=b2)
    if beta1 != 0:
        raise ValueError(f"Theorem 1 assumes no momentum (beta1 = 0); this run has beta1 = {beta1}. "
                         f"Use exact=True for Adam's exact law with momentum, or pass beta1=0 to compare anyway.")
    if beta2 is None:
        return theory.update_distribution
    return lambda m: theory.update_distribution(float(theory.adam_effective_m(beta2, m)))


def compare_with_theory(stats: UpdateStats, beta2: float | None = None, *, exact: bool = False,
                        beta1: float | None = None):
    """:func:`adamdist.results.compare_with_law` against :func:`predicted_law` (KS and variance per step).

    With ``exact=True`` restrict ``stats`` to a few steps first
    (``stats.select(steps=[...])``): each step's exact law costs about a second.
    """
    return compare_with_law(stats, predicted_law(stats, beta2, exact=exact, beta1=beta1))
