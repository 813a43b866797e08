"""Per-step statistics of an update (or gradient) stream: the result type shared
by :mod:`adamdist.simulate` and :mod:`adamdist.capture`.

Simulated and captured updates are the same kind of data: for every recorded
optimizer step ``m`` (1-based, the paper's :math:`m`) and every tracked tensor
``name`` we keep

* moments of the finite entries: ``count``, ``mean``, ``var``, ``abs_var``
  (variance of :math:`|u|`), ``skew``; and ``nonfinite`` (entries that were NaN
  or infinite, which are excluded from everything else);
* a histogram on fixed ``edges`` with separate ``underflow``/``overflow`` counts;
* the raw values of a fixed random subset of coordinates (the same coordinates
  at every step), for exact Kolmogorov-Smirnov comparisons.

Memory is ``O(steps * names * (bins + sample_size))``: never the full tensors.

:class:`StatsAccumulator` fills these arrays on the tensors' own device without
host synchronisation; :class:`UpdateStats` is the host-side, immutable result
with tidy :meth:`UpdateStats.to_frame` views, atomic :meth:`UpdateStats.save`
and :func:`load`, and comparisons against a predicted law
(:func:`compare_with_law`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._validation import check_int

__all__ = ["UpdateStats", "StatsAccumulator", "load", "compare_with_law", "ks_distance", "default_edges"]

_FORMAT_VERSION = 1
_CHUNK = 1 << 18  # entries per block in StatsAccumulator's CPU fast path (3 x 2 MiB of float64 scratch)
_ARRAY_FIELDS = ("count", "mean", "var", "abs_var", "skew", "nonfinite", "hist", "underflow", "overflow")


def default_edges(half_width: float = 4.0, bins: int = 80) -> np.ndarray:
    """Uniform histogram edges on ``[-half_width, half_width]``.

    The default covers the theory's support for the first steps (the update of
    Theorem 1 is bounded by :math:`\\sqrt{m}`) and more than 4 standard
    deviations of its Gaussian limit (eq. 31); anything outside is counted in
    the under/overflow bins rather than lost.
    """
    if not np.isfinite(half_width) or half_width <= 0:
        raise ValueError(f"half_width must be a finite number > 0, got {half_width!r}")
    check_int(bins, "bins", low=1)
    return np.linspace(-half_width, half_width, bins + 1)


def _check_edges(edges) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"edges must be a 1-d array of at least 2 bin edges, got shape {edges.shape}")
    if not np.isfinite(edges).all():
        raise ValueError("edges must be finite")
    if not (np.diff(edges) > 0).all():
        raise ValueError("edges must be strictly increasing")
    return edges


def _uniform_grid(edges: np.ndarray):
    """``(e0, width, bins)`` if the edges are equally spaced (to 1e-11 of a bin), else None.

    The CPU fast path of :class:`StatsAccumulator` bins by arithmetic and
    re-bins exactly every value within 1e-8 of a bin of an edge, so edges that
    deviate from the uniform grid by much less than that are safe.
    """
    bins = edges.size - 1
    width = (edges[-1] - edges[0]) / bins
    grid = edges[0] + np.arange(bins + 1) * width
    if np.max(np.abs(grid - edges)) > 1e-11 * width:
        return None
    return float(edges[0]), float(width), bins


@dataclass(frozen=True, eq=False)
class UpdateStats:
    """Per-step, per-tensor statistics of an update stream.

    Arrays are indexed ``[step_index, name_index, ...]``; ``steps[i]`` is the
    1-based optimizer step (the paper's :math:`m`) of row ``i``.

    Attributes
    ----------
    steps : ndarray of int, shape (S,)
    names : tuple of str, length N
    edges : ndarray, shape (B + 1,)
    count, nonfinite, underflow, overflow : ndarray of int, shape (S, N)
    mean, var, abs_var, skew : ndarray of float, shape (S, N)
        Population moments (``ddof=0``) of the finite entries; NaN where a
        step had no finite entry (and ``skew`` NaN where the variance is 0).
    hist : ndarray of int, shape (S, N, B)
    samples : dict name -> ndarray, shape (S, K_name)
        Values of a fixed random subset of ``K_name`` coordinates.
    metadata : dict
        JSON-serialisable description of the run (optimizer, hyper-parameters,
        torch version, device, seed, ...).
    """

    steps: np.ndarray
    names: tuple
    edges: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    abs_var: np.ndarray
    skew: np.ndarray
    nonfinite: np.ndarray
    hist: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray
    samples: Mapping[str, np.ndarray] = field(default_factory=dict)
    metadata: Mapping = field(default_factory=dict)

    def __post_init__(self):
        steps = np.asarray(self.steps, dtype=np.int64)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "edges", _check_edges(self.edges))
        shape = (steps.size, len(self.names))
        for name in _ARRAY_FIELDS:
            arr = np.asarray(getattr(self, name))
            want = shape + ((self.edges.size - 1,) if name == "hist" else ())
            if arr.shape != want:
                raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
            object.__setattr__(self, name, arr)
        samples = {str(k): np.asarray(v, dtype=np.float64) for k, v in dict(self.samples).items()}
        for k, v in samples.items():
            if k not in self.names:
                raise ValueError(f"samples has an entry for {k!r}, which is not in names")
            if v.ndim != 2 or v.shape[0] != steps.size:
                raise ValueError(f"samples[{k!r}] must have shape (steps, k), got {v.shape}")
        object.__setattr__(self, "samples", samples)
        json.dumps(dict(self.metadata))  # fail now, not at save time
        object.__setattr__(self, "metadata", dict(self.metadata))

    # -- tidy views ---------------------------------------------------------
    def to_frame(self, kind: str = "moments") -> pd.DataFrame:
        """Tidy (long) view of the statistics.

        Parameters
        ----------
        kind : {"moments", "hist", "sample"}
            ``"moments"``: one row per (step, name) with ``count, mean, var,
            abs_var, skew, nonfinite, underflow, overflow``.
            ``"hist"``: one row per (step, name, bin) with ``left, right,
            count, density``; under/overflow rows have ``left=-inf`` or
            ``right=inf`` (and ``density`` NaN) so nothing is silently dropped.
            ``"sample"``: one row per recorded value with ``step, name, value``.
        """
        n_steps, n_names = self.count.shape
        step_col = np.repeat(self.steps, n_names)
        name_col = np.tile(np.array(self.names, dtype=object), n_steps)
        if kind == "moments":
            data = {"step": step_col, "name": name_col}
            for col in ("count", "mean", "var", "abs_var", "skew", "nonfinite", "underflow", "overflow"):
                data[col] = getattr(self, col).reshape(-1)
            return pd.DataFrame(data)
        if kind == "hist":
            bins = self.edges.size - 1
            left = np.concatenate([[-np.inf], self.edges[:-1], [self.edges[-1]]])
            right = np.concatenate([[self.edges[0]], self.edges[1:], [np.inf]])
            counts = np.concatenate([self.underflow[..., None], self.hist, self.overflow[..., None]], axis=-1)
            total = counts.sum(axis=-1, keepdims=True)
            width = np.diff(self.edges)
            with np.errstate(invalid="ignore", divide="ignore"):
                density = np.full(counts.shape, np.nan)
                density[..., 1:-1] = self.hist / (total * width)
            per_bin = bins + 2
            return pd.DataFrame({
                "step": np.repeat(step_col, per_bin),
                "name": np.repeat(name_col, per_bin),
                "left": np.tile(left, n_steps * n_names),
                "right": np.tile(right, n_steps * n_names),
                "count": counts.reshape(-1),
                "density": density.reshape(-1),
            })
        if kind == "sample":
            frames = []
            for name in self.names:
                values = self.samples.get(name)
                if values is None or values.size == 0:
                    continue
                frames.append(pd.DataFrame({
                    "step": np.repeat(self.steps, values.shape[1]),
                    "name": name,
                    "value": values.reshape(-1),
                }))
            if not frames:
                return pd.DataFrame({"step": np.array([], dtype=np.int64), "name": [], "value": []})
            return pd.concat(frames, ignore_index=True)
        raise ValueError(f"kind must be one of 'moments', 'hist', 'sample', got {kind!r}")

    def select(self, names: Sequence[str] | None = None, steps: Sequence[int] | None = None) -> "UpdateStats":
        """A new :class:`UpdateStats` restricted to some names and/or steps."""
        name_idx = np.arange(len(self.names)) if names is None else np.array([self._name_index(n) for n in names])
        if steps is None:
            step_idx = np.arange(self.steps.size)
        else:
            lookup = {int(s): i for i, s in enumerate(self.steps)}
            missing = [s for s in steps if int(s) not in lookup]
            if missing:
                raise ValueError(f"steps {missing} were not recorded; recorded steps are {self.steps.tolist()}")
            step_idx = np.array([lookup[int(s)] for s in steps])
        kept = [self.names[i] for i in name_idx]
        arrays = {f: getattr(self, f)[np.ix_(step_idx, name_idx)] for f in _ARRAY_FIELDS}
        return UpdateStats(steps=self.steps[step_idx], names=tuple(kept), edges=self.edges,
                           samples={n: self.samples[n][step_idx] for n in kept if n in self.samples},
                           metadata=self.metadata, **arrays)

    def _name_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"name {name!r} is not in this result; names are {list(self.names)}") from None

    # -- persistence --------------------------------------------------------
    def save(self, path) -> None:
        """Write to one ``.npz`` file (arrays plus JSON metadata), atomically.

        The data go to a temporary file in the same folder which is then
        renamed over ``path``, so a crash never leaves a truncated file.
        """
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        payload = {f: getattr(self, f) for f in _ARRAY_FIELDS}
        payload["steps"] = self.steps
        payload["edges"] = self.edges
        payload["names_json"] = np.array(json.dumps(list(self.names)))
        payload["metadata_json"] = np.array(json.dumps(self.metadata))
        payload["format_version"] = np.array(_FORMAT_VERSION)
        sample_names = [n for n in self.names if n in self.samples]
        payload["sample_names_json"] = np.array(json.dumps(sample_names))
        for i, n in enumerate(sample_names):
            payload[f"sample_{i}"] = self.samples[n]
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def load(path) -> UpdateStats:
    """Read an :class:`UpdateStats` written by :meth:`UpdateStats.save`."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        version = int(data["format_version"])
        if version != _FORMAT_VERSION:
            raise ValueError(f"{path} has format version {version}; this adamdist reads version {_FORMAT_VERSION}")
        sample_names = json.loads(str(data["sample_names_json"]))
        return UpdateStats(
            steps=data["steps"], names=tuple(json.loads(str(data["names_json"]))), edges=data["edges"],
            samples={n: data[f"sample_{i}"] for i, n in enumerate(sample_names)},
            metadata=json.loads(str(data["metadata_json"])),
            **{f: data[f] for f in _ARRAY_FIELDS},
        )


def ks_distance(sample, cdf: Callable) -> float:
    """Kolmogorov-Smirnov distance :math:`\\sup_x |F_n(x) - F(x)|`.

    Exact for continuous and for discrete laws (the m = 1 two-point law): the
    supremum is taken over both one-sided limits at every sample point, using
    :math:`F(x^-)` for the left limit.
    """
    x = np.sort(np.asarray(sample, dtype=np.float64))
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("sample must be a non-empty array of finite values")
    v = np.unique(x)
    n = x.size
    right = np.searchsorted(x, v, side="right") / n
    left = np.searchsorted(x, v, side="left") / n
    f_right = np.asarray(cdf(v), dtype=np.float64)
    f_left = np.asarray(cdf(np.nextafter(v, -np.inf)), dtype=np.float64)
    return float(max(np.abs(right - f_right).max(), np.abs(left - f_left).max()))


def _snap_to_atoms(x: np.ndarray, dist, rtol: float = 1e-5) -> np.ndarray:
    """Move values within ``rtol`` of an atom of a discrete law onto it.

    The m = 1 law is a point mass on +-sqrt(c); a float32 update like
    0.99999994 is that atom up to rounding, but an exact KS distance would see
    it on the wrong side of the jump.
    """
    # scipy's rv_discrete(values=...) is its own frozen law with .xk; a frozen rv_discrete has .dist.xk
    atoms = getattr(dist, "xk", None)
    if atoms is None:
        atoms = getattr(getattr(dist, "dist", None), "xk", None)
    if atoms is None:
        return x
    x = x.copy()
    for a in np.asarray(atoms, dtype=np.float64):
        x[np.abs(x - a) <= rtol * max(abs(a), 1.0)] = a
    return x


def compare_with_law(stats: UpdateStats, law: Callable[[int], object] | None = None) -> pd.DataFrame:
    """Kolmogorov-Smirnov distance and variance ratio against a predicted law.

    Parameters
    ----------
    stats : UpdateStats
    law : callable, optional
        ``law(m)`` returns a distribution with ``.cdf(x)`` and ``.var()`` for
        step ``m`` (a frozen :mod:`scipy.stats` distribution, or an
        :func:`adamdist.exact.update_distribution`). Defaults to Theorem 1,
        :func:`adamdist.theory.update_distribution` with ``c = m``; at
        ``m = 1`` that law is the two-point law on :math:`\\pm 1`.

    Returns
    -------
    DataFrame
        One row per (step, name): ``step, name, n_sample, ks, ks_band,
        var_measured, var_predicted, var_ratio``. ``ks`` is
        :math:`\\sup_x |F_n(x) - F(x)|` on the recorded sample;
        ``ks_band`` is the 99% Kolmogorov band :math:`1.63/\\sqrt{n}` that a
        sample from the law itself stays below 99% of the time.
        ``var_measured`` is the variance of all finite entries of the tensor.
        For a discrete law (the m = 1 point masses), sample values within a
        relative 1e-5 of an atom count as that atom, so float rounding of
        :math:`\\pm 1` does not read as a rejection.
    """
    if law is None:
        from .theory import update_distribution as law
    rows = []
    for i, m in enumerate(stats.steps):
        dist = law(int(m))
        predicted_var = float(dist.var())
        for j, name in enumerate(stats.names):
            values = stats.samples.get(name)
            ks = np.nan
            n = 0
            if values is not None:
                x = np.sort(values[i][np.isfinite(values[i])])
                n = x.size
                if n:
                    ks = ks_distance(_snap_to_atoms(x, dist), dist.cdf)
            measured = float(stats.var[i, j])
            rows.append({
                "step": int(m), "name": name, "n_sample": n, "ks": ks,
                "ks_band": 1.63 / np.sqrt(n) if n else np.nan,
                "var_measured": measured, "var_predicted": predicted_var,
                "var_ratio": measured / predicted_var if predicted_var > 0 else np.nan,
            })
    return pd.DataFrame(rows)


class StatsAccumulator:
    """Collect :class:`UpdateStats` from torch tensors on their own device.

    All buffers are allocated up front on ``device``; :meth:`record` only
    launches tensor operations (no ``.item()``, ``.cpu()`` or other host
    synchronisation), so it can sit inside a training step without stalling
    the GPU. :meth:`result` copies everything to the host once.

    Parameters
    ----------
    names : sequence of str
        Tracked tensors, in the order of the result's ``names``.
    numels : sequence of int
        Number of entries of each tracked tensor (fixes the sampled coordinates).
    n_steps : int
        Capacity: how many steps can be recorded.
    edges : array_like
        Strictly increasing histogram edges.
    sample_size : int
        Coordinates sampled per tensor (``min(sample_size, numel)``).
    seed : int
        Seeds the choice of sampled coordinates (the same at every step).
    device : torch.device or str
    """

    def __init__(self, names: Sequence[str], numels: Sequence[int], n_steps: int, edges,
                 sample_size: int = 2000, seed: int = 0, device="cpu"):
        import torch

        names = [str(n) for n in names]
        if len(set(names)) != len(names):
            raise ValueError("names must be unique")
        if len(numels) != len(names):
            raise ValueError(f"numels must have one entry per name ({len(names)}), got {len(numels)}")
        self.names = tuple(names)
        self.n_steps = check_int(n_steps, "n_steps", low=1)
        check_int(sample_size, "sample_size", low=0)
        check_int(seed, "seed")
        self.edges = _check_edges(edges)
        self.device = torch.device(device)
        self.seed = seed
        n, s, b = len(names), self.n_steps, self.edges.size - 1
        f64 = dict(dtype=torch.float64, device=self.device)
        i64 = dict(dtype=torch.int64, device=self.device)
        self._edges = torch.as_tensor(self.edges, **f64)
        self._moments = torch.full((s, n, 4), float("nan"), **f64)  # mean, var, abs_var, skew
        self._counts = torch.zeros((s, n, 2), **i64)  # finite, non-finite
        # bucketize index 0 = underflow, b + 1 = overflow
        self._hist = torch.zeros((s, n, b + 2), **i64)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        self._sample_idx = []
        for numel in numels:
            numel = check_int(int(numel), "numels entry", low=0)
            k = min(sample_size, numel)
            if k == numel:
                idx = torch.arange(numel)
            elif k == 0:  # no draw: a recorder that keeps its own samples pays nothing here
                idx = torch.arange(0)
            else:
                idx = torch.randperm(numel, generator=gen)[:k].sort().values
            self._sample_idx.append(idx.to(self.device))
        self._samples = [torch.full((s, idx.numel()), float("nan"), **f64) for idx in self._sample_idx]
        self._steps = np.zeros(s, dtype=np.int64)
        self._max_numel = max([int(k) for k in numels], default=0)
        self._uniform = _uniform_grid(self.edges)
        if self._uniform is not None:  # pos = 1 + (x - e0) / width as one fused multiply-add
            e0, width, _ = self._uniform
            self._hist_offset = torch.tensor(1.0 - e0 / width, dtype=torch.float64)
            self._hist_scale = torch.tensor(1.0 / width, dtype=torch.float64)
        self._work = None  # CPU scratch buffers of the fast path, allocated on first use

    def record(self, slot: int, name_index: int, values) -> None:
        """Record the statistics of ``values`` (any shape) at row ``slot``.

        ``slot`` and ``name_index`` are host integers chosen by the caller;
        ``values`` stays on its device.
        """
        import torch

        values = values.detach()
        if (self._uniform is not None and values.device.type == "cpu" and values.is_floating_point()
                and 0 < values.numel() <= self._max_numel and self._record_cpu(slot, name_index, values.reshape(-1))):
            return
        x = values.reshape(-1).to(torch.float64)
        finite = torch.isfinite(x)
        n_finite = finite.sum()
        self._counts[slot, name_index, 0] = n_finite
        self._counts[slot, name_index, 1] = x.numel() - n_finite
        xf = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
        n = n_finite.to(torch.float64)  # 0 gives NaN moments, which is what "no data" means
        mean = xf.sum() / n
        d = torch.where(finite, xf - mean, torch.zeros((), dtype=x.dtype, device=x.device))
        d2 = d * d
        var = d2.sum() / n
        skew = (d2 * d).sum() / n / var.pow(1.5)
        a = xf.abs()
        abs_mean = a.sum() / n
        da = torch.where(finite, a - abs_mean, torch.zeros((), dtype=x.dtype, device=x.device))
        abs_var = (da * da).sum() / n
        self._moments[slot, name_index] = torch.stack([mean, var, abs_var, skew])
        bucket = self._exact_bucket(xf)
        self._hist[slot, name_index].scatter_add_(0, bucket, finite.to(torch.int64))
        idx = self._sample_idx[name_index]
        if idx.numel():
            self._samples[name_index][slot] = x.index_select(0, idx)

    def _record_cpu(self, slot: int, name_index: int, x) -> bool:
        """Fast path for CPU tensors of finite values and uniform edges; returns False to defer.

        Same results as the general path (moments to float64 rounding, the
        histogram bin for bin) at a fraction of the cost, because on the CPU

        * a host synchronisation is free, so we can check once that every
          entry is finite instead of masking every operation;
        * ``torch.bucketize`` (a binary search per entry) is slow, while for
          uniform edges the bin is an affine function of the value. The
          arithmetic bin is exact except within rounding of an edge; entries
          that close to an edge are detected (their fractional position is
          within ``1e-8`` of an integer) and re-binned exactly;
        * moments come from power sums about a shift ``c`` (the mean of a
          strided subset), which avoids the cancellation of raw power sums
          without a second pass for the mean;
        * scratch buffers are allocated once (fresh multi-megabyte temporaries
          cost page faults at every step).
        """
        import torch

        n = x.numel()
        if self._work is None:
            m = min(self._max_numel, _CHUNK)
            # int32 bin indices: half the memory traffic of int64, and bincount reads them faster
            self._work = (torch.empty(m, dtype=torch.float64), torch.empty(m, dtype=torch.float64),
                          torch.empty(m, dtype=torch.float64), torch.empty(m, dtype=torch.int32))
        c = x[:: max(1, n // 1024)].to(torch.float64).mean()
        if not bool(torch.isfinite(c)):
            return False
        sums = torch.zeros(4, dtype=torch.float64)  # sum |x|, sum d, sum d^2, sum d^3 with d = x - c
        counts = torch.zeros(self.edges.size + 1, dtype=torch.int64)
        # blocks of _CHUNK entries: the ~12 passes below then run on cache-resident scratch
        # buffers instead of streaming 8-byte copies of the whole tensor through memory each time
        for start in range(0, n, _CHUNK):
            block = x[start:start + _CHUNK]
            xd, d, w, idx = (b[:block.numel()] for b in self._work)
            xd.copy_(block)
            abs_sum = torch.abs(xd, out=w).sum()
            if not bool(torch.isfinite(abs_sum)):  # some entry is NaN/inf (or |x| sums past 1e308)
                return False
            torch.sub(xd, c, out=d)
            d2 = torch.mul(d, d, out=w)
            sums += torch.stack([abs_sum, d.sum(), d2.sum(), torch.dot(d2, d)])
            counts += self._block_histogram(block, xd, d, w, idx)
        abs_sum, s1, s2, s3 = sums / n
        var = s2 - s1 * s1
        mean = c + s1
        m3 = s3 - 3 * s1 * s2 + 2 * s1**3
        skew = m3 / var.pow(1.5)
        # E|x|^2 = E x^2; cancellation only when |x| is nearly constant, where the error stays ~1e-16 E x^2
        abs_var = torch.clamp(var + mean * mean - abs_sum * abs_sum, min=0.0)
        self._moments[slot, name_index] = torch.stack([mean, var, abs_var, skew])
        self._counts[slot, name_index, 0] = n
        self._counts[slot, name_index, 1] = 0
        self._hist[slot, name_index] = counts
        sample_idx = self._sample_idx[name_index]
        if sample_idx.numel():
            self._samples[name_index][slot] = x.index_select(0, sample_idx)
        return True

    def _block_histogram(self, x, xd, pos, frac, idx):
        """Bin counts (underflow, bins, overflow) of one block; ``xd`` holds it in float64.

        ``pos``, ``frac`` and ``idx`` are scratch buffers of the block's length.
        """
        import torch

        # position 1 + (x - e0) / width, clamped so under/overflow land in 0 and B + 1
        e0, width, bins = self._uniform
        torch.addcmul(self._hist_offset, xd, self._hist_scale, out=pos).clamp_(0.5, bins + 1.5)
        idx.copy_(pos)  # conversion truncates towards zero, which is floor() since pos >= 0.5
        torch.frac(pos, out=frac)  # pos - trunc(pos); same dtype, unlike pos - idx
        lo, hi = torch.aminmax(frac)
        tol = 1e-8
        if float(lo) < tol or float(hi) > 1 - tol:
            near = (frac < tol) | (frac > 1 - tol)
            if int(near.sum()) * 16 < near.numel():  # a few entries: fix them one by one
                where = torch.nonzero(near).squeeze(1)
                fixed = self._rebin_near_edge(idx.index_select(0, where), frac.index_select(0, where),
                                              xd.index_select(0, where))
                idx.index_copy_(0, where, fixed)
            else:  # many (e.g. updates of exactly +-1 at step 1): one vectorised pass over the block
                idx.copy_(torch.where(near, self._rebin_near_edge(idx, frac, xd), idx))
        return torch.bincount(idx, minlength=bins + 2)

    def _rebin_near_edge(self, idx, frac, xd):
        """Exact bins of entries that lie within rounding of an edge (same dtype as ``idx``).

        The nearest edge has index ``round(pos) - 1``; one exact float64 comparison with it
        decides between the bins on either side.
        """
        import torch

        bins = self.edges.size - 1
        j = (idx.to(torch.int64) + (frac > 0.5) - 1).clamp_(0, bins)
        edge = self._edges.index_select(0, j)
        exact = torch.where(xd >= edge, j + 1, j)
        exact = torch.where((j == bins) & (xd == edge), j, exact)  # the last edge closes the last bin
        return exact.to(idx.dtype)

    def _exact_bucket(self, x):
        """Bin index (0 = underflow, B + 1 = overflow) with numpy.histogram's edge rules."""
        import torch

        # right=True puts a value equal to an inner edge in the bin to its right,
        # like numpy.histogram; the last edge itself belongs to the last bin.
        bucket = torch.bucketize(x, self._edges, right=True)
        return torch.where(x == self._edges[-1], torch.full_like(bucket, self.edges.size - 1), bucket)

    def set_step(self, slot: int, step: int) -> None:
        """Label row ``slot`` with the 1-based optimizer step ``step``."""
        check_int(step, "step", low=1)
        self._steps[slot] = step

    def result(self, metadata: Mapping | None = None, n_rows: int | None = None) -> UpdateStats:
        """Copy the first ``n_rows`` recorded rows to the host as :class:`UpdateStats`."""
        rows = self.n_steps if n_rows is None else check_int(n_rows, "n_rows", low=0, high=self.n_steps)
        moments = self._moments[:rows].cpu().numpy()
        counts = self._counts[:rows].cpu().numpy()
        hist = self._hist[:rows].cpu().numpy()
        return UpdateStats(
            steps=self._steps[:rows].copy(), names=self.names, edges=self.edges,
            count=counts[..., 0], nonfinite=counts[..., 1],
            mean=moments[..., 0], var=moments[..., 1], abs_var=moments[..., 2], skew=moments[..., 3],
            hist=hist[..., 1:-1], underflow=hist[..., 0], overflow=hist[..., -1],
            samples={n: s[:rows].cpu().numpy() for n, s in zip(self.names, self._samples)},
            metadata=dict(metadata or {}),
        )
