"""adamdist.data.vision: the real offline data, and the error when data are missing."""

import os
import warnings
from pathlib import Path

import pytest

pytest.importorskip("torchvision")

from adamdist.data import DataNotFoundError  # noqa: E402
from adamdist.data import vision  # noqa: E402

SHARED = Path(os.environ.get("ADAMDIST_DATA", "/work/shared/data"))
HAS_CIFAR = (SHARED / "cifar10" / "train").is_dir() or (SHARED / "cifar10" / "cifar-10-batches-py").is_dir()
HAS_MNIST = (SHARED / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
needs_cifar = pytest.mark.skipif(not HAS_CIFAR, reason=f"CIFAR-10 not found under {SHARED} (set ADAMDIST_DATA)")
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=f"MNIST not found under {SHARED} (set ADAMDIST_DATA)")


@needs_cifar
def test_cifar10_train_is_the_full_real_split(monkeypatch):
    monkeypatch.setenv("ADAMDIST_DATA", str(SHARED))
    ds = vision.cifar10(train=True, transform=vision.cifar10_transform(), download=False)
    assert len(ds) == 50_000
    assert tuple(ds.classes) == vision.CIFAR10_CLASSES
    assert ds.class_to_idx == {c: i for i, c in enumerate(vision.CIFAR10_CLASSES)}
    assert sorted(ds.targets.count(i) for i in range(10)) == [5000] * 10
    # the official first training image (data_batch_1, index 0) is a frog, label 6
    first = [i for i, (path, _) in enumerate(ds.samples) if path.endswith("00000.png")]
    x, y = ds[first[0]]
    assert tuple(x.shape) == (3, 32, 32) and y == 6


@needs_cifar
def test_cifar10_partial_test_split_warns(monkeypatch):
    monkeypatch.setenv("ADAMDIST_DATA", str(SHARED))
    if not (SHARED / "cifar10" / "test").is_dir():
        pytest.skip("no image-tree test split")
    with pytest.warns(UserWarning, match="partial test split"):
        ds = vision.cifar10(train=False, download=False)
    assert len(ds) < 10_000
    assert "test" in ds.adamdist_note


@needs_mnist
def test_mnist_real(monkeypatch):
    monkeypatch.setenv("ADAMDIST_DATA", str(SHARED))
    ds = vision.mnist(train=True, transform=vision.mnist_transform(), download=False)
    assert len(ds) == 60_000
    x, y = ds[0]
    assert tuple(x.shape) == (1, 28, 28) and y == 5
    assert len(vision.mnist(train=False, download=False)) == 10_000


@pytest.mark.parametrize("loader, name", [(vision.cifar10, "CIFAR-10"), (vision.mnist, "MNIST")])
def test_missing_data_raises_one_clear_error(tmp_path, monkeypatch, loader, name):
    monkeypatch.setenv("ADAMDIST_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as info:
        loader(train=True, download=False)
    msg = str(info.value)
    assert name in msg and str(tmp_path) in msg and "ADAMDIST_DATA" in msg
    assert "download=False" in msg
    assert not any(tmp_path.iterdir())  # nothing synthetic was written


def test_failed_mnist_download_names_the_mirrors(tmp_path, monkeypatch):
    from torchvision import datasets

    # a closed local port: every "mirror" fails at once, without touching the network
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataNotFoundError, match="every torchvision mirror failed") as info:
        vision.mnist(root=tmp_path, download=True)
    assert "MNIST" in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_failed_cifar_download(tmp_path, monkeypatch):
    from torchvision import datasets

    monkeypatch.setattr(datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataNotFoundError, match="download failed") as info:
            vision.cifar10(root=tmp_path, download=True)
    assert "CIFAR-10" in str(info.value)


def test_wrong_class_folders_are_rejected(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "cifar10" / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "cifar10" / "train" / cls / "0.png")
    with pytest.raises(ValueError, match="class folders"):
        vision.cifar10(root=tmp_path, download=False)
