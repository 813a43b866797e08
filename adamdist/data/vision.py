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
says which data set, which folder was searched and how to provide it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from torchvision import datasets
from torchvision import transforms as T

from . import DataNotFoundError, data_root

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


def _cifar_image_tree(folder: Path, train: bool, transform):
    """The ImageFolder copy ``folder/{train,test}/<class>/``, class order checked."""
    split = folder / ("train" if train else "test")
    ds = datasets.ImageFolder(str(split), transform=transform)
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


def cifar10(train: bool = True, transform=None, download: bool = True, root=None):
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

    Returns
    -------
    torch.utils.data.Dataset
        Items ``(image, label)`` with labels 0..9 in the order of
        :data:`CIFAR10_CLASSES` (torchvision's ``CIFAR10.classes``). The data
        set has an ``adamdist_note`` attribute saying where it came from.

    Raises
    ------
    DataNotFoundError
        Neither layout is under ``root/cifar10`` and the download is disabled
        or failed.
    """
    folder = _resolve_root(root) / "cifar10"
    split = "train" if train else "test"
    if (folder / split).is_dir():
        return _cifar_image_tree(folder, train, transform)
    if (folder / "cifar-10-batches-py").is_dir() or download:
        try:
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


def mnist(train: bool = True, transform=None, download: bool = True, root=None):
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

    Raises
    ------
    DataNotFoundError
        The IDX files are missing and the download is disabled or every mirror failed.
    """
    root = _resolve_root(root)
    raw = root / "MNIST" / "raw"
    split = "train" if train else "test"
    try:
        ds = datasets.MNIST(str(root), train=train, transform=transform, download=False)
    except RuntimeError as missing:
        if not download:
            raise DataNotFoundError(_mnist_missing(raw, split, "download=False")) from missing
        try:
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
