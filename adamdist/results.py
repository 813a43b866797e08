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
import re
import secrets
import socket
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._validation import check_int, check_seed

__all__ = ["UpdateStats", "StatsAccumulator", "load", "compare_with_law", "ks_distance", "ks_band", "default_edges", "MomentSums",
           "merge_shards"]

_FORMAT_VERSION = 1
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
    """``(e0, width, bins)`` if the edges are (nearly) equally spaced, else None.

    The native kernel bins such edges by arithmetic and compares with the
    edges themselves only values within 1e-7 of a bin of an edge, so "nearly"
    means within 1e-9 of a bin: far inside that margin. Other edges are
    bisected.
    """
    bins = edges.size - 1
    width = (edges[-1] - edges[0]) / bins
    grid = edges[0] + np.arange(bins + 1) * width
    if bins >= 2**30 or np.max(np.abs(grid - edges)) > 1e-9 * width:
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
    no_grad : ndarray of bool, shape (S, N)
        True where the tensor had no gradient at that step (frozen, or
        ``grad is None``): its row describes no update and is left out of every
        comparison with a law. ``None`` (the default) means all False.
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
    no_grad: np.ndarray | None = None

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
        no_grad = np.zeros(shape, dtype=bool) if self.no_grad is None else np.asarray(self.no_grad)
        if no_grad.shape != shape or no_grad.dtype != bool:
            raise ValueError(f"no_grad must be a boolean array of shape {shape}, got {no_grad.dtype} {no_grad.shape}")
        object.__setattr__(self, "no_grad", no_grad)
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
            abs_var, skew, nonfinite, underflow, overflow, no_grad``.
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
            for col in ("count", "mean", "var", "abs_var", "skew", "nonfinite", "underflow", "overflow", "no_grad"):
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
        name_idx = np.arange(len(self.names)) if names is None else np.array([self._name_index(n) for n in names], dtype=np.intp)
        if steps is None:
            step_idx = np.arange(self.steps.size)
        else:
            lookup = {int(s): i for i, s in enumerate(self.steps)}
            missing = [s for s in steps if int(s) not in lookup]
            if missing:
                raise ValueError(f"steps {missing} were not recorded; recorded steps are {self.steps.tolist()}")
            step_idx = np.array([lookup[int(s)] for s in steps], dtype=np.intp)
        kept = [self.names[i] for i in name_idx]
        arrays = {f: getattr(self, f)[np.ix_(step_idx, name_idx)] for f in _ARRAY_FIELDS}
        return UpdateStats(steps=self.steps[step_idx], names=tuple(kept), edges=self.edges,
                           samples={n: self.samples[n][step_idx] for n in kept if n in self.samples},
                           metadata=self.metadata, no_grad=self.no_grad[np.ix_(step_idx, name_idx)], **arrays)

    def _name_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"name {name!r} is not in this result; names are {list(self.names)}") from None

    # -- export -------------------------------------------------------------
    def to_tensorboard(self, writer_or_logdir, tag: str = "updates", *, step_offset: int = 0) -> int:
        """Every step's histogram (our bins) and moments to TensorBoard: see
        :func:`adamdist.integrations.tensorboard.to_tensorboard` (needs ``adamdist[tensorboard]``)."""
        from .integrations.tensorboard import to_tensorboard

        return to_tensorboard(self, writer_or_logdir, tag, step_offset=step_offset)

    def to_wandb(self, run=None, tag: str = "updates", *, step_offset: int = 0) -> int:
        """Every step's histogram (our bins) and moments to a W&B run: see
        :func:`adamdist.integrations.wandb.to_wandb` (needs ``adamdist[wandb]``)."""
        from .integrations.wandb import to_wandb

        return to_wandb(self, run, tag, step_offset=step_offset)

    # -- persistence --------------------------------------------------------
    def save(self, path) -> None:
        """Write to one ``.npz`` file (arrays plus JSON metadata), atomically.

        The data go to a temporary file ``.tmp-<pid>@<host>.<random>.npz`` in
        the same folder which is then renamed over ``path``, so a crash never
        leaves a truncated file. The file gets the permissions the umask gives
        any new file (``0644`` under umask ``022``).

        Each save also removes the temporary files that killed saves left in
        the folder: those whose name carries this host and the id of a process
        that no longer runs. The temporary file of a save still running in
        another process, or on another host sharing the folder, is kept.
        """
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        payload = {f: getattr(self, f) for f in _ARRAY_FIELDS}
        payload["steps"] = self.steps
        payload["edges"] = self.edges
        payload["no_grad"] = self.no_grad
        payload["names_json"] = np.array(json.dumps(list(self.names)))
        payload["metadata_json"] = np.array(json.dumps(self.metadata))
        payload["format_version"] = np.array(_FORMAT_VERSION)
        sample_names = [n for n in self.names if n in self.samples]
        payload["sample_names_json"] = np.array(json.dumps(sample_names))
        for i, n in enumerate(sample_names):
            payload[f"sample_{i}"] = self.samples[n]
        fd, tmp = _create_temporary(folder)
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
        _remove_stale_temporaries(folder)


_TEMPORARY = re.compile(r"\.tmp-(?P<pid>\d+)@(?P<host>.+)\.[0-9a-f]{16}\.(npz|html)")


def _create_temporary(folder: str, suffix: str = ".npz") -> tuple[int, str]:
    """Create a new temporary file in ``folder`` named after this process; return ``(fd, path)``."""
    while True:
        tmp = os.path.join(folder, f".tmp-{os.getpid()}@{socket.gethostname()}.{secrets.token_hex(8)}{suffix}")
        try:
            # mode 0o666 as for any new file: the kernel applies the umask (mkstemp's 0600 would not)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only probes; PermissionError means another user's live process
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass
    return True


def _remove_stale_temporaries(folder: str) -> None:
    """Remove the temporary files of this host's saves whose process is gone."""
    if os.name != "posix":  # elsewhere os.kill(pid, 0) would end the process instead of probing it
        return
    host = socket.gethostname()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match and match["host"] == host and not _process_exists(int(match["pid"])):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:  # removed by another save meanwhile, or not ours to remove: the save itself succeeded
                pass


_NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries, an empty zip


def load(path) -> UpdateStats:
    """Read an :class:`UpdateStats` written by :meth:`UpdateStats.save`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (other errors opening it keep their
        ``OSError`` as well).
    ValueError
        Naming ``path`` and what is wrong if the file is truncated, corrupted,
        from another adamdist format version, or not a file ``save`` wrote
        (another ``.npz``, pickled objects, missing entries, bad JSON, wrong
        shapes). Pickled data are never unpickled.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        try:
            if fh.read(4) not in _NPZ_MAGIC:
                raise ValueError("it is not an .npz (zip) file")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                return _from_npz(data)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise ValueError(f"{path} is truncated or corrupted ({exc})") from exc
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path} cannot be read as an UpdateStats result: {exc}") from exc


def _from_npz(data) -> UpdateStats:
    version = _numbers(data, "format_version")
    if version.ndim or version.dtype.kind not in "iu":
        raise ValueError(f"its 'format_version' entry must be one integer, got {version!r}")
    if int(version) != _FORMAT_VERSION:
        raise ValueError(f"it has format version {int(version)}; this adamdist reads version {_FORMAT_VERSION}")
    sample_names = _names(data, "sample_names_json")
    metadata = _json(data, "metadata_json")
    if not isinstance(metadata, dict):
        raise ValueError(f"its 'metadata_json' entry must be a JSON object, got {type(metadata).__name__}")
    return UpdateStats(
        steps=_numbers(data, "steps"), names=_names(data, "names_json"), edges=_numbers(data, "edges"),
        samples={n: _numbers(data, f"sample_{i}") for i, n in enumerate(sample_names)}, metadata=metadata,
        no_grad=_entry(data, "no_grad") if "no_grad" in data.files else None,  # files from before the flag: none
        **{f: _numbers(data, f) for f in _ARRAY_FIELDS},
    )


def _entry(data, key: str) -> np.ndarray:
    """One array of an open ``.npz``, refusing pickled objects by their header rather than by numpy's error."""
    member_name = f"{key}.npy"
    if member_name not in data.zip.namelist():
        raise ValueError(f"it has no {key!r} entry")
    with data.zip.open(member_name) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):  # what numpy writes for plain arrays
            raise ValueError(f"its {key!r} entry has .npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        dtype = read_header(member)[2]
    if dtype.hasobject:
        raise ValueError(f"its {key!r} entry holds pickled Python objects, which save never writes and load never runs")
    return data[key]


def _numbers(data, key: str) -> np.ndarray:
    arr = _entry(data, key)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"its {key!r} entry must hold numbers, got dtype {arr.dtype}")
    return arr


def _json(data, key: str):
    arr = _entry(data, key)
    if arr.ndim or arr.dtype.kind != "U":
        raise ValueError(f"its {key!r} entry must be one JSON text, got dtype {arr.dtype} shape {arr.shape}")
    try:
        return json.loads(str(arr))
    except json.JSONDecodeError as exc:
        raise ValueError(f"its {key!r} entry is not valid JSON ({exc})") from None


def _names(data, key: str) -> tuple:
    names = _json(data, key)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"its {key!r} entry must be a JSON list of strings, got {names!r:.80}")
    return tuple(names)


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


def ks_band(n, m=None, level: float = 0.99):
    r"""The Kolmogorov-Smirnov distance that a sample of the law stays below with probability ``level``.

    One sample of size :math:`n` against its own law: :math:`K_{\text{level}} / \sqrt n`; two
    samples of sizes :math:`n, m` of one law: :math:`K_{\text{level}} \sqrt{(n + m) / (n m)}`, with
    :math:`K` the Kolmogorov distribution's quantile (``scipy.stats.kstwobign``; 1.628 at 99%).
    Asymptotic, and for independent draws: a guide for the sampled coordinates of a tensor,
    whose updates share the step's gradient scale.

    Examples
    --------
    >>> round(float(ks_band(2000)), 4), round(float(ks_band(100_000, 100_000)), 5)
    (0.0364, 0.00728)
    """
    from scipy.stats import kstwobign

    n = np.asarray(n, dtype=np.float64)
    if np.any(n <= 0) or (m is not None and np.any(np.asarray(m) <= 0)):
        raise ValueError(f"sample sizes must be positive, got n={n!r}, m={m!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    scale = 1 / np.sqrt(n) if m is None else np.sqrt((n + np.asarray(m, dtype=np.float64)) / (n * m))
    return kstwobign.ppf(level) * scale


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
        One row per (step, name): ``step, name, no_grad, n_sample, ks, ks_band,
        var_measured, var_predicted, var_ratio``. Rows flagged ``no_grad``
        (the tensor got no gradient at that step) are not compared: their
        ``ks``, ``var_measured`` and ``var_ratio`` are NaN. ``ks`` is
        :math:`\\sup_x |F_n(x) - F(x)|` on the recorded sample;
        ``ks_band`` is the 99% Kolmogorov band :func:`ks_band` (:math:`\\approx 1.63/\\sqrt{n}`) that a
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
            skipped = bool(stats.no_grad[i, j])
            if values is not None and not skipped:
                x = np.sort(values[i][np.isfinite(values[i])])
                n = x.size
                if n:
                    ks = ks_distance(_snap_to_atoms(x, dist), dist.cdf)
            measured = np.nan if skipped else float(stats.var[i, j])
            rows.append({
                "step": int(m), "name": name, "no_grad": skipped, "n_sample": n, "ks": ks,
                "ks_band": float(ks_band(n)) if n else np.nan,
                "var_measured": measured, "var_predicted": predicted_var,
                "var_ratio": measured / predicted_var if predicted_var > 0 else np.nan,
            })
    return pd.DataFrame(rows)


def _native_code(dtype) -> int | None:
    """The kernel's code for a torch dtype (0 float32, 1 float64), None for dtypes it does not read."""
    import torch

    return {torch.float32: 0, torch.float64: 1}.get(dtype)


# one row per tensor; the layout of job_t in _native/kernels.c (every field 8 bytes: no padding)
_JOB_DTYPE = np.dtype([("a", np.uintp), ("b", np.uintp), ("neg_lr", np.float64), ("n", np.int64),
                       ("sample_idx", np.uintp), ("sample_col", np.uintp), ("n_sample", np.int64),
                       ("sample_out", np.uintp), ("hist", np.uintp), ("moments", np.uintp),
                       ("counts", np.uintp), ("abs_sum", np.uintp)])


class NativeBatch:
    """Fixed tensors -> one call of the compiled kernel per step (see :meth:`StatsAccumulator.native_batch`).

    The per-tensor bookkeeping (output addresses, sample tables) is laid out
    once here; :meth:`run` only fills in the tensors' current addresses and the
    row, so a step over a hundred tensors costs one C call and a few vectorised
    NumPy assignments.
    """

    def __init__(self, acc: "StatsAccumulator", lib, name_indices, numels, dtype, samples, abs_sum):
        import torch

        self._acc, self._lib = acc, lib  # the accumulator owns the buffers the table points into
        self._dtype = dtype
        self._code = _native_code(dtype)
        k = len(name_indices)
        jobs = np.zeros(k, dtype=_JOB_DTYPE)
        index = np.asarray(name_indices, dtype=np.int64)
        jobs["n"] = np.asarray(numels, dtype=np.int64)
        self._keep = []  # tensors whose addresses the table holds
        self._out_base = np.zeros(k, dtype=np.uintp)
        self._out_stride = np.zeros(k, dtype=np.uintp)
        for q, spec in enumerate(samples or []):
            if spec is None:
                continue
            idx, col, out = spec
            idx = idx.to(device="cpu", dtype=torch.int64).contiguous()
            if idx.numel() == 0:
                continue
            if out.dtype != torch.float64 or out.device.type != "cpu" or out.stride(-1) != 1:
                raise ValueError("sample buffers must be float64 CPU tensors with contiguous rows")
            jobs["sample_idx"][q] = idx.data_ptr()
            jobs["n_sample"][q] = idx.numel()
            if col is not None:
                col = col.to(device="cpu", dtype=torch.int64).contiguous()
                jobs["sample_col"][q] = col.data_ptr()
            self._keep += [t for t in (idx, col, out) if t is not None]
            self._out_base[q] = out.data_ptr()
            self._out_stride[q] = out.stride(0) * 8
        n_names, width = len(acc.names), acc.edges.size + 1
        # byte offsets of row (slot, name) in the accumulator's (steps, names, k) buffers
        self._hist = (acc._hist.data_ptr(), n_names * width * 8, index * width * 8)
        self._moments = (acc._moments.data_ptr(), n_names * 4 * 8, index * 4 * 8)
        self._counts = (acc._counts.data_ptr(), n_names * 2 * 8, index * 2 * 8)
        self._abs = None
        if abs_sum is not None:
            if abs_sum.dtype != torch.float64 or not abs_sum.is_contiguous():
                raise ValueError("abs_sum must be a contiguous float64 tensor")
            self._abs = (abs_sum.data_ptr(), abs_sum.stride(0) * 8, index * 8)
            self._keep.append(abs_sum)
        self._has_samples = jobs["n_sample"] > 0
        self._jobs = jobs
        self._numels = jobs["n"].tolist()
        uniform = _uniform_grid(acc.edges)
        self._grid = (1, uniform[0], 1.0 / uniform[1]) if uniform else (0, 0.0, 0.0)
        self._edges = np.ascontiguousarray(acc.edges, dtype=np.float64)

    def run(self, slot: int, tensors, before=None, neg_lr=None) -> None:
        """Summarise ``tensors`` into row ``slot``.

        With ``before``, the values are ``(before - tensors) / neg_lr`` (per
        tensor, evaluated in the tensors' dtype): a recorder's update without
        writing it out. ``neg_lr`` is a float or a per-tensor sequence.
        """
        import torch

        jobs = self._jobs
        for q, (x, n) in enumerate(zip(tensors, self._numels)):  # a user may swap .data: check every time
            if x.dtype != self._dtype or x.device.type != "cpu" or not x.is_contiguous() or x.numel() != n:
                raise ValueError(f"tensor {q} does not match this batch (dtype {self._dtype}, contiguous, "
                                 f"{n} entries on the CPU)")
        if before is None:
            jobs["a"] = [x.data_ptr() for x in tensors]
            jobs["b"] = 0
        else:
            jobs["a"] = [x.data_ptr() for x in before]
            jobs["b"] = [x.data_ptr() for x in tensors]
            jobs["neg_lr"] = neg_lr
        s = np.uintp(slot)
        for job, (base, stride, offset) in (("hist", self._hist), ("moments", self._moments),
                                            ("counts", self._counts)):
            jobs[job] = base + s * stride + offset
        if self._abs is not None:
            base, stride, offset = self._abs
            jobs["abs_sum"] = base + s * stride + offset
        jobs["sample_out"] = np.where(self._has_samples, self._out_base + s * self._out_stride, 0)
        uniform, e0, inv_w = self._grid
        status = self._lib.adamdist_stats(jobs.ctypes.data, len(jobs), self._code, self._edges.ctypes.data,
                                          self._edges.size - 1, uniform, e0, inv_w, torch.get_num_threads())
        if status != 0:
            raise MemoryError("adamdist's statistics kernel could not allocate its scratch memory")


class DeviceBatch:
    """Fixed tensors -> a fixed number of torch operations per step, on any device (see :meth:`StatsAccumulator.device_batch`).

    The tensors arrive concatenated into one flat tensor; per-tensor sums are
    segment reductions (``torch.segment_reduce`` with precomputed lengths), the
    histogram is one ``scatter_add_`` into every tensor's row at once. So a
    step costs the same ~50 operations whether it covers 1 tensor or 200, and
    none of them reads a value back to the host (``unsafe=True`` skips
    segment_reduce's checks, which would; ``output_size`` does the same for
    ``repeat_interleave``). Temporary memory: about 40 bytes per entry.
    """

    def __init__(self, acc: "StatsAccumulator", name_indices, numels, samples=None, abs_sum=None):
        import torch

        i64 = dict(dtype=torch.int64, device=acc.device)
        self._acc = acc
        self._index = torch.as_tensor(np.asarray(name_indices, dtype=np.int64), **i64)
        self._lengths = torch.as_tensor(np.asarray(numels, dtype=np.int64), **i64)
        self.total = int(np.sum(numels, dtype=np.int64))
        self._row_base = self._index * (acc.edges.size + 1)  # offset of each tensor's row in a step's histogram
        if samples is not None:
            src, out, dst = samples
            if out.dtype != torch.float64 or out.device != acc.device:
                raise ValueError(f"the sample buffer must be float64 on {acc.device}")
            samples = (src.to(**i64), out, dst.to(**i64))
        self._samples = samples
        self._abs_sum = abs_sum

    def run(self, slot: int, flat) -> None:
        """Summarise ``flat`` (the tensors' values, concatenated in order; any float dtype) into row ``slot``."""
        import torch

        if flat.dim() != 1 or flat.numel() != self.total:
            raise ValueError(f"expected the {self.total} values of this batch as one flat tensor, got shape "
                             f"{tuple(flat.shape)}")
        acc, lengths, n = self._acc, self._lengths, self.total

        def per_tensor_sum(v):
            return torch.segment_reduce(v, "sum", lengths=lengths, unsafe=True)

        def spread(v):  # one value per tensor -> one per entry
            return torch.repeat_interleave(v, lengths, output_size=n)

        if self._samples is not None:
            src, out, dst = self._samples
            out[slot].index_copy_(0, dst, flat.index_select(0, src).to(torch.float64))
        x = flat.to(torch.float64, copy=True)  # worked on in place below
        finite = torch.isfinite(x)
        x.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        weight = finite.to(torch.float64)
        count = per_tensor_sum(weight)  # 0 gives NaN moments, which is what "no data" means
        bucket = acc._exact_bucket(x)
        bucket.add_(spread(self._row_base))
        acc._hist[slot].view(-1).scatter_add_(0, bucket, finite.to(torch.int64))
        del bucket
        mean = per_tensor_sum(x) / count
        a = x.abs()
        abs_total = per_tensor_sum(a)
        a.sub_(spread(abs_total / count)).mul_(weight)  # |x| - mean |x|, 0 at non-finite entries
        abs_var = per_tensor_sum(a.mul_(a)) / count
        del a
        x.sub_(spread(mean)).mul_(weight)
        d2 = x * x
        var = per_tensor_sum(d2) / count
        skew = per_tensor_sum(d2.mul_(x)) / count / var.pow(1.5)
        acc._moments[slot].index_copy_(0, self._index, torch.stack([mean, var, abs_var, skew], 1))
        acc._counts[slot].index_copy_(0, self._index, torch.stack([count, lengths - count], 1).to(torch.int64))
        if self._abs_sum is not None:
            self._abs_sum[slot].index_copy_(0, self._index, abs_total)


class MomentSums:
    r"""Count, mean and central moment sums of one shard, mergeable (Chan, Golub & LeVeque 1979).

    With :math:`\delta = \bar x_b - \bar x_a` and :math:`n = n_a + n_b`,

    .. math::

        M_2 = M_{2,a} + M_{2,b} + \delta^2 \frac{n_a n_b}{n},\quad
        M_3 = M_{3,a} + M_{3,b} + \delta^3 \frac{n_a n_b (n_a - n_b)}{n^2}
              + 3\delta \frac{n_a M_{2,b} - n_b M_{2,a}}{n},

    which, unlike summing :math:`\sum x^2` across ranks, loses no digits when
    the mean is large compared with the spread. The same merge on :math:`|u|`
    gives ``abs_var``. Arrays run over the recorded steps.
    """

    def __init__(self, n, mean, m2, m3, amean, am2):
        self.n, self.mean, self.m2, self.m3, self.amean, self.am2 = n, mean, m2, m3, amean, am2

    @classmethod
    def from_stats(cls, stats, abs_sum, j):
        n = stats.count[:, j].astype(np.float64)
        var = stats.var[:, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            m3 = np.where(var > 0, stats.skew[:, j] * var**1.5 * n, 0.0)  # var == 0: all deviations are 0
            amean = abs_sum[:, j] / n
        return cls(n, stats.mean[:, j], var * n, m3, amean, stats.abs_var[:, j] * n)

    def merge(self, other):
        na, nb = self.n, other.n
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            d = other.mean - self.mean
            mean = self.mean + d * nb / n
            m2 = self.m2 + other.m2 + d * d * na * nb / n
            m3 = (self.m3 + other.m3 + d**3 * na * nb * (na - nb) / n**2
                  + 3 * d * (na * other.m2 - nb * self.m2) / n)
            da = other.amean - self.amean
            amean = self.amean + da * nb / n
            am2 = self.am2 + other.am2 + da * da * na * nb / n
        merged = [mean, m2, m3, amean, am2]
        mine = [self.mean, self.m2, self.m3, self.amean, self.am2]
        theirs = [other.mean, other.m2, other.m3, other.amean, other.am2]
        # an empty side contributes nothing (its moments are NaN, not 0)
        out = [np.where(na == 0, b, np.where(nb == 0, a, m)) for m, a, b in zip(merged, mine, theirs)]
        return MomentSums(n, *out)

    def final(self):
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.n > 0, self.n, np.nan)
            var = self.m2 / n
            skew = self.m3 / n / var**1.5
            return self.mean, var, self.am2 / n, skew

def merge_shards(parts, j: int) -> dict:
    r"""Column ``j`` of the statistics of one tensor recorded in disjoint shards (FSDP ranks).

    ``parts``: ``[(stats, abs_sum), ...]``, each an :class:`UpdateStats` of the
    same steps and bins and the per-step sums of :math:`|x|` over its finite
    entries (shape ``(steps, tensors)``). Counts and histograms add; the
    moments merge by :class:`MomentSums` (Chan's formulas), exactly as if the
    whole tensor had been summarised at once, to rounding. One part is
    returned as it is.

    Returns
    -------
    dict
        Field name (``count, nonfinite, hist, underflow, overflow, mean, var,
        abs_var, skew``) -> that field's column ``j`` (steps first).
    """
    stats = [s for s, _ in parts]
    out = {f: sum(getattr(s, f)[:, j] for s in stats) for f in ("count", "nonfinite", "hist", "underflow", "overflow")}
    if len(parts) == 1:
        out.update({f: getattr(stats[0], f)[:, j] for f in ("mean", "var", "abs_var", "skew")})
        return out
    acc = None
    for s, abs_sum in parts:
        piece = MomentSums.from_stats(s, abs_sum, j)
        acc = piece if acc is None else acc.merge(piece)
    out["mean"], out["var"], out["abs_var"], out["skew"] = acc.final()
    return out


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
        check_seed(seed, "seed")
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
        self._single = {}  # (name_index, dtype or "device", numel) -> one-tensor batch for record()

    def record(self, slot: int, name_index: int, values) -> None:
        """Record the statistics of ``values`` (any shape) at row ``slot``.

        ``slot`` and ``name_index`` are host integers chosen by the caller;
        ``values`` stays on its device.
        """
        import torch

        values = values.detach()
        if values.device.type == "cpu" and _native_code(values.dtype) is not None and values.is_contiguous():
            key = (name_index, values.dtype, values.numel())
            if key not in self._single:
                idx = self._sample_idx[name_index]
                self._single[key] = self.native_batch(
                    [name_index], [values.numel()], values.dtype,
                    samples=[(idx, None, self._samples[name_index])] if idx.numel() else None)
            batch = self._single[key]
            if batch is not None:
                batch.run(slot, [values])
                return
        key = (name_index, "device", values.numel())
        if key not in self._single:
            idx = self._sample_idx[name_index]
            self._single[key] = self.device_batch(
                [name_index], [values.numel()],
                samples=(idx, self._samples[name_index], torch.arange(idx.numel())) if idx.numel() else None)
        self._single[key].run(slot, values.reshape(-1))

    def native_batch(self, name_indices: Sequence[int], numels: Sequence[int], dtype, *,
                     samples=None, abs_sum=None) -> "NativeBatch | None":
        """A reusable work order for the compiled kernel over a fixed list of CPU tensors.

        ``None`` when the kernel is unavailable (see :mod:`adamdist._native`), or
        the accumulator is not on the CPU, or ``dtype`` is not float32/float64:
        then record tensor by tensor with :meth:`record`.

        Parameters
        ----------
        name_indices, numels : sequences of int
            Which rows of the result each tensor fills, and the tensors' sizes.
        dtype : torch.dtype
        samples : sequence of (index, columns, out) or None, optional
            Per tensor: flat indices to sample (int64 tensor), the columns they go
            to (int64 tensor, or None for 0, 1, ...) and the float64 buffer of
            shape ``(n_steps, width)`` whose row ``slot`` receives them.
        abs_sum : torch.Tensor, optional
            float64 ``(n_steps, len(names))``: also store the sum of ``|x|`` over
            the finite entries (what a sharded recorder needs to merge shards).
        """
        from . import _native

        if self.device.type != "cpu" or _native_code(dtype) is None:
            return None
        lib = _native.library()
        if lib is None:
            return None
        return NativeBatch(self, lib, name_indices, numels, dtype, samples, abs_sum)

    def device_batch(self, name_indices: Sequence[int], numels: Sequence[int], *, samples=None,
                     abs_sum=None) -> DeviceBatch:
        """A reusable work order over a fixed list of tensors, in torch operations on the accumulator's device.

        One :meth:`DeviceBatch.run` per step summarises all of them from their
        concatenated values, with a number of operations that does not grow
        with the number of tensors (what a GPU needs: launches, not arithmetic,
        dominate for many small tensors).

        Parameters
        ----------
        name_indices, numels : sequences of int
            Which rows of the result each tensor fills, and the tensors' sizes.
        samples : (index, out, columns) or None, optional
            Flat indices into the concatenated values to sample (int64 tensor),
            the float64 buffer of shape ``(n_steps, width)`` whose row ``slot``
            receives them, and the column of each (int64 tensor).
        abs_sum : torch.Tensor, optional
            As for :meth:`native_batch`.
        """
        if len(name_indices) != len(numels):
            raise ValueError(f"name_indices and numels must have the same length, got {len(name_indices)} "
                             f"and {len(numels)}")
        return DeviceBatch(self, name_indices, numels, samples, abs_sum)

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

    def result(self, metadata: Mapping | None = None, n_rows: int | None = None, first_row: int = 0) -> UpdateStats:
        """Copy the recorded rows ``first_row .. n_rows - 1`` to the host as :class:`UpdateStats`."""
        rows = self.n_steps if n_rows is None else check_int(n_rows, "n_rows", low=0, high=self.n_steps)
        first = check_int(first_row, "first_row", low=0, high=rows)
        moments = self._moments[first:rows].cpu().numpy()
        counts = self._counts[first:rows].cpu().numpy()
        hist = self._hist[first:rows].cpu().numpy()
        return UpdateStats(
            steps=self._steps[first:rows].copy(), names=self.names, edges=self.edges,
            count=counts[..., 0], nonfinite=counts[..., 1],
            mean=moments[..., 0], var=moments[..., 1], abs_var=moments[..., 2], skew=moments[..., 3],
            hist=hist[..., 1:-1], underflow=hist[..., 0], overflow=hist[..., -1],
            samples={n: s[first:rows].cpu().numpy() for n, s in zip(self.names, self._samples)},
            metadata=dict(metadata or {}),
        )
