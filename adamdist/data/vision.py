"""CIFAR-10 and MNIST, from disk or torchvision's downloads, never synthetic.

Where the data are looked for (``root`` is :func:`adamdist.data.data_root`,
i.e. ``$ADAMDIST_DATA`` or ``~/.cache/adamdist/data``):

* CIFAR-10: ``root/cifar10/``, either as an image tree
  ``cifar10/{train,test}/<class>/*.png`` (the layout of the team's offline copy,
  read with :class:`torchvision.datasets.ImageFolder`) or as torchvision's own
  ``cifar10/cifar-10-batches-py/`` (which :func:`cifar10` downloads there when
  neither is present and ``download=True``).
* MNIST: torchvision's layout ``root/MNIST/raw/*-ubyte`` (the four IDX files),
  downloaded there from torchvision's mirrors when missing.

When a data set is neither on disk nor downloadable, :class:`DataNotFoundError`
says which data set, which folder was searched and how to provide it; a file
that is there but damaged (a truncated IDX file or PNG) raises
:class:`DataDamagedError` naming it. A download that receives nothing for
``download_timeout`` seconds (default 60, or ``$ADAMDIST_DOWNLOAD_TIMEOUT``)
is given up with the same :class:`DataNotFoundError` as a refused one.
"""

from __future__ import annotations

import contextlib
import socket
import warnings
from pathlib import Path

import numpy as np
from torchvision import datasets
from torchvision import transforms as T

from . import DataDamagedError, DataNotFoundError, data_root
from . import download_timeout as download_timeout_seconds

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "cifar10",
    "cifar10_transform",
    "mnist",
    "mnist_transform",
]

# torchvision's CIFAR10.classes, i.e. the official label ids 0..9 in order
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# per-channel mean and standard deviation of the 50,000 training images (pixels in [0, 1])
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# mean and standard deviation of the 60,000 MNIST training images (pixels in [0, 1])
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

_CIFAR_TEST_SIZE = 10_000


def cifar10_transform() -> T.Compose:
    """``ToTensor`` then per-channel standardisation with the CIFAR-10 train statistics.

    No augmentation: the experiments measure the update law near
    initialisation, and a deterministic input stream makes runs reproducible.
    """
    return T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def mnist_transform() -> T.Compose:
    """``ToTensor`` then standardisation with the MNIST train mean and std."""
    return T.Compose([T.ToTensor(), T.Normalize(MNIST_MEAN, MNIST_STD)])


def _resolve_root(root) -> Path:
    return data_root() if root is None else Path(root).expanduser()


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """torchvision's downloads open URLs without a timeout: give every connect and read one, then restore."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _load_image(path: str):
    """ImageFolder's loader, with the file named when it cannot be read (a truncated PNG)."""
    try:
        return datasets.folder.default_loader(path)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for damaged files
        raise DataDamagedError(path, f"the image cannot be read ({type(exc).__name__}: {exc})") from exc


_IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def _idx_problem(path: Path) -> str | None:
    """What is wrong with an IDX file (MNIST's format: magic, dimensions, then the data), or None."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_ITEM_BYTES:
            return f"it does not start with an IDX header (first bytes {head!r})"
        dims = np.frombuffer(fh.read(4 * head[3]), dtype=">u4")
    if dims.size != head[3]:
        return f"its header is cut short ({size} bytes)"
    expected = 4 + 4 * head[3] + int(np.prod(dims, dtype=np.int64)) * _IDX_ITEM_BYTES[head[2]]
    if size != expected:
        return f"it has {size:,} bytes, its header (shape {tuple(int(d) for d in dims)}) says {expected:,}"
    return None


def _check_mnist_files(raw: Path, train: bool) -> None:
    """Raise DataDamagedError for a damaged IDX file of the split that is on disk (missing ones are no damage)."""
    prefix = "train" if train else "t10k"
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        path = raw / name
        if path.is_file():
            problem = _idx_problem(path)
            if problem:
                raise DataDamagedError(path, problem)


def _cifar_image_tree(folder: Path, train: bool, transform):
    """The ImageFolder copy ``folder/{train,test}/<class>/``, class order checked."""
    split = folder / ("train" if train else "test")
    ds = datasets.ImageFolder(str(split), transform=transform, loader=_load_image)
    if tuple(ds.classes) != CIFAR10_CLASSES:
        raise ValueError(f"{split} has class folders {ds.classes}; CIFAR-10 needs exactly {list(CIFAR10_CLASSES)} "
                         "(ImageFolder sorts them, which gives the official label ids)")
    if not train and len(ds) < _CIFAR_TEST_SIZE:
        # the offline copy has the first 1,000 official test images only; say so
        # loudly rather than let a test accuracy pass for the full test set's
        warnings.warn(f"{split} holds {len(ds)} of the {_CIFAR_TEST_SIZE:,} CIFAR-10 test images "
                      "(a partial test split): results on it are not comparable with full-test-set numbers",
                      UserWarning, stacklevel=3)
    ds.adamdist_note = (f"CIFAR-10 {'train' if train else 'test'} split read as an image tree from {split}: "
                        f"{len(ds):,} images")
    return ds


def cifar10(train: bool = True, transform=None, download: bool = True, root=None, download_timeout=None):
    """The CIFAR-10 train or test split (Krizhevsky, 2009).

    Parameters
    ----------
    train : bool
        Training split (50,000 images) or test split (10,000 images; the
        team's offline image-tree copy has only the first 1,000 of them, and
        a ``UserWarning`` says so whenever such a partial test split is loaded).
    transform : callable, optional
        Applied to each PIL image; e.g. :func:`cifar10_transform`.
    download : bool
        Download torchvision's copy into ``root/cifar10`` when none is on disk.
    root : path, optional
        Data root; defaults to :func:`adamdist.data.data_root`.
    download_timeout : float, optional
        Seconds the download may receive nothing before it is given up;
        default ``$ADAMDIST_DOWNLOAD_TIMEOUT`` or 60.

    Returns
    -------
    torch.utils.data.Dataset
        Items ``(image, label)`` with labels 0..9 in the order of
        :data:`CIFAR10_CLASSES` (torchvision's ``CIFAR10.classes``). The data
        set has an ``adamdist_note`` attribute saying where it came from.

    Raises
    ------
    DataNotFoundError
        Neither layout is under ``root/cifar10`` and the download is disabled,
        failed or timed out.
    DataDamagedError
        Raised when an image of the image tree is read (item access) and
        cannot be decoded; it names the file.
    """
    timeout = download_timeout_seconds(download_timeout)
    folder = _resolve_root(root) / "cifar10"
    split = "train" if train else "test"
    if (folder / split).is_dir():
        return _cifar_image_tree(folder, train, transform)
    if (folder / "cifar-10-batches-py").is_dir() or download:
        try:
            with _socket_timeout(timeout):
                ds = datasets.CIFAR10(str(folder), train=train, transform=transform, download=download)
        except Exception as exc:  # network errors come in many types; all mean "not available"
            raise DataNotFoundError(_cifar_missing(folder, split, f"the download failed: {exc}")) from exc
        ds.adamdist_note = f"CIFAR-10 {split} split, torchvision's copy in {folder}: {len(ds):,} images"
        return ds
    raise DataNotFoundError(_cifar_missing(folder, split, "download=False"))


def _cifar_missing(folder: Path, split: str, why: str) -> str:
    return (f"CIFAR-10 ({split} split) was not found in {folder} and was not downloaded ({why}). "
            f"Provide it in one of two ways: put torchvision's 'cifar-10-batches-py' folder in {folder} "
            f"(torchvision.datasets.CIFAR10(root='{folder}', download=True) on a machine with network access), "
            f"or an image tree {folder}/{split}/<class>/*.png with the class folders "
            f"{', '.join(CIFAR10_CLASSES)}; or set ADAMDIST_DATA to a folder that has a 'cifar10' subfolder.")


def mnist(train: bool = True, transform=None, download: bool = True, root=None, download_timeout=None):
    """The MNIST train (60,000) or test (10,000) split.

    Parameters
    ----------
    train : bool
        Training or test split.
    transform : callable, optional
        Applied to each PIL image; e.g. :func:`mnist_transform`.
    download : bool
        Download into ``root/MNIST/raw`` when the files are missing. torchvision
        tries each of its mirrors (``torchvision.datasets.MNIST.mirrors``) in turn;
        the original yann.lecun.com host often refuses, the others usually work.
    root : path, optional
        Data root; defaults to :func:`adamdist.data.data_root`.
    download_timeout : float, optional
        Seconds a mirror may send nothing before the next one is tried;
        default ``$ADAMDIST_DOWNLOAD_TIMEOUT`` or 60.

    Raises
    ------
    DataNotFoundError
        The IDX files are missing and the download is disabled or every mirror
        failed or timed out.
    DataDamagedError
        An IDX file of the split is on disk but damaged (its size disagrees
        with its header); nothing is downloaded over it.
    """
    timeout = download_timeout_seconds(download_timeout)
    root = _resolve_root(root)
    raw = root / "MNIST" / "raw"
    split = "train" if train else "test"
    _check_mnist_files(raw, train)
    try:
        ds = datasets.MNIST(str(root), train=train, transform=transform, download=False)
    except RuntimeError as missing:
        if not download:
            raise DataNotFoundError(_mnist_missing(raw, split, "download=False")) from missing
        try:
            with _socket_timeout(timeout):
                ds = datasets.MNIST(str(root), train=train, transform=transform, download=True)
        except Exception as exc:  # every mirror failed (torchvision raises RuntimeError; be generous)
            mirrors = ", ".join(getattr(datasets.MNIST, "mirrors", []))
            raise DataNotFoundError(_mnist_missing(raw, split, f"every torchvision mirror failed ({mirrors}): {exc}")) from exc
    ds.adamdist_note = f"MNIST {split} split from {raw}: {len(ds):,} images"
    return ds


def _mnist_missing(raw: Path, split: str, why: str) -> str:
    return (f"MNIST ({split} split) was not found in {raw} and was not downloaded ({why}). "
            f"Put the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            f"t10k-labels-idx1-ubyte (uncompressed, or their .gz archives for torchvision to unpack) in {raw}, "
            "e.g. by running torchvision.datasets.MNIST(root=..., download=True) on a machine that reaches one of "
            "torchvision's mirrors and copying the MNIST folder; or set ADAMDIST_DATA to a folder containing MNIST/raw.")
