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


# -- damaged files and stalled downloads (issue: no silent failures) --------------------------------------
import socket  # noqa: E402
import threading  # noqa: E402

from adamdist.data import DataDamagedError, download_timeout  # noqa: E402


class _SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a download that stalls."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held = []
        self.stop = threading.Event()

        def serve():
            self.sock.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    self.held.append(self.sock.accept()[0])
                except OSError:
                    continue

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_a_stalled_mnist_download_ends_with_data_not_found(tmp_path, monkeypatch):
    with _SilentServer() as url:
        monkeypatch.setattr(vision.datasets.MNIST, "mirrors", [url])
        with pytest.raises(DataNotFoundError, match="every torchvision mirror failed") as err:
            vision.mnist(root=tmp_path, download_timeout=0.5)
    assert "timed out" in str(err.value)
    assert socket.getdefaulttimeout() is None  # restored


def test_a_stalled_cifar_download_ends_with_data_not_found(tmp_path, monkeypatch):
    with _SilentServer() as url:
        monkeypatch.setattr(vision.datasets.CIFAR10, "url", url + "cifar-10-python.tar.gz")
        monkeypatch.setenv("ADAMDIST_DOWNLOAD_TIMEOUT", "0.5")
        with pytest.raises(DataNotFoundError, match="the download failed.*timed out"):
            vision.cifar10(root=tmp_path)
    assert socket.getdefaulttimeout() is None


@pytest.mark.parametrize("value", [0, -1, float("inf"), "soon", True])
def test_download_timeout_is_checked(value):
    with pytest.raises(ValueError, match=r"download_timeout must be a number of seconds in \(0, inf\)"):
        download_timeout(value)


def test_download_timeout_from_the_environment(monkeypatch):
    assert download_timeout() == 60.0
    monkeypatch.setenv("ADAMDIST_DOWNLOAD_TIMEOUT", "2.5")
    assert download_timeout() == 2.5
    monkeypatch.setenv("ADAMDIST_DOWNLOAD_TIMEOUT", "later")
    with pytest.raises(ValueError, match="ADAMDIST_DOWNLOAD_TIMEOUT must be a number of seconds"):
        download_timeout()


def _idx(path, dims, data_bytes):
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
    path.write_bytes(header + bytes(data_bytes))


@pytest.mark.parametrize("download", [False, True])
def test_a_truncated_mnist_file_is_named_not_reported_missing(tmp_path, monkeypatch, download):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _idx(raw / "train-images-idx3-ubyte", (60000, 28, 28), 60000 * 28 * 28)
    _idx(raw / "train-labels-idx1-ubyte", (60000,), 30000)  # cut in half
    monkeypatch.setattr(vision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing is downloaded
    with pytest.raises(DataDamagedError, match=r"train-labels-idx1-ubyte is damaged: it has 30,008 bytes, its "
                                               r"header \(shape \(60000,\)\) says 60,008") as err:
        vision.mnist(root=tmp_path, download=download)
    assert err.value.path == raw / "train-labels-idx1-ubyte"


def test_an_mnist_file_that_is_not_idx_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"<html>mirror error page</html>")
    with pytest.raises(DataDamagedError, match="t10k-images-idx3-ubyte is damaged: it does not start with an IDX"):
        vision.mnist(train=False, root=tmp_path, download=False)


@needs_mnist
def test_the_real_mnist_files_pass_the_check():
    for train in (True, False):
        vision._check_mnist_files(SHARED / "MNIST" / "raw", train)


def test_a_truncated_cifar_png_is_named_when_read(tmp_path):
    from PIL import Image

    for k, name in enumerate(vision.CIFAR10_CLASSES):
        folder = tmp_path / "cifar10" / "train" / name
        folder.mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 20, 0, 0)).save(folder / "0.png")
    bad = tmp_path / "cifar10" / "train" / "bird" / "0.png"
    bad.write_bytes(bad.read_bytes()[:40])
    ds = vision.cifar10(root=tmp_path, download=False)
    assert ds[0][1] == 0  # good images still load
    with pytest.raises(DataDamagedError, match=r"cifar10/train/bird/0\.png is damaged: the image cannot be read"):
        ds[vision.CIFAR10_CLASSES.index("bird")]
