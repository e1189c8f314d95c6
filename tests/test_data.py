"""Datasets: splits, subsets, standardisation, IDX parsing, TFDS (offline), synthetic."""

import gzip
import struct
import sys

import numpy as np
import pytest
from conftest import MNIST_T10K

from bnlab.config.schema import DataConfig
from bnlab.data.dataset import load, prepare
from bnlab.data.sources import DATASETS, read_idx
from bnlab.errors import ConfigError


def _rows(x):
    return {a.tobytes() for a in x}


def test_embedded_digits_are_the_real_ones():
    x, y = DATASETS.get("digits")("", DataConfig()).train
    assert x.shape == (1797, 8, 8, 1) and x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])  # UCI optdigits' test set
    np.testing.assert_array_equal((x[0, :, :, 0] * 16).astype(int)[0], [0, 0, 5, 13, 9, 1, 0, 0])


def test_digits_splits_are_deterministic_disjoint_and_complete():
    cfg = DataConfig(name="digits", standardize="none")
    a = prepare(DATASETS.get("digits")("", cfg), cfg, "digits")
    b = prepare(DATASETS.get("digits")("", cfg), cfg, "digits")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.sizes() == {"train": 1294, "val": 144, "test": 359}
    assert a.image_shape == (8, 8, 1) and a.num_classes == 10
    tr, va, te = _rows(a.x_train), _rows(a.x_val), _rows(a.x_test)
    # the digits set contains a few exact duplicate images, so compare counts loosely
    assert len(tr & te) < 5 and len(tr & va) < 5
    other = prepare(DATASETS.get("digits")("", DataConfig(split_seed=1)), DataConfig(split_seed=1, standardize="none"), "digits")
    assert not np.array_equal(other.y_test, a.y_test)


@pytest.mark.parametrize("kind", ["feature", "channel"])
def test_standardisation_is_fitted_on_train_only(kind):
    cfg = DataConfig(standardize=kind)
    ds = load(cfg)
    raw = prepare(DATASETS.get("digits")("", cfg), DataConfig(standardize="none"), "digits")
    axes = (0,) if kind == "feature" else (0, 1, 2)
    mean = raw.x_train.mean(axes)
    std = raw.x_train.std(axes)
    std = np.where(std < 1e-8, 1.0, std)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ds.x_train.mean(axes), 0.0, atol=1e-4)
    assert abs(ds.x_test.mean()) > 1e-4  # test statistics were not used


def test_subset_takes_training_examples_only():
    ds = load(DataConfig(subset=100))
    assert ds.sizes() == {"train": 100, "val": 144, "test": 359}


def test_synthetic_any_size():
    ds = load(DataConfig(name="synthetic", synthetic_size=500, synthetic_shape=[4, 4, 3], synthetic_classes=3))
    assert ds.image_shape == (4, 4, 3) and ds.num_classes == 3
    assert sum(ds.sizes().values()) == 500


def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def test_idx_roundtrip_with_train_and_test_files(tmp_path):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, size=(50, 6, 5), dtype=np.uint8)
    ytr = rng.integers(0, 4, size=50).astype(np.uint8)
    xte = rng.integers(0, 256, size=(20, 6, 5), dtype=np.uint8)
    yte = rng.integers(0, 4, size=20).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", xtr)
    write_idx(tmp_path / "train-labels-idx1-ubyte", ytr)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", xte, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", yte, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), xte)
    ds = load(DataConfig(name=f"idx:{tmp_path}", standardize="none", val_fraction=0.2))
    assert ds.sizes() == {"train": 40, "val": 10, "test": 20}  # the file's own test split is kept
    np.testing.assert_allclose(ds.x_test[..., 0], xte / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, yte)


def test_idx_errors(tmp_path):
    (tmp_path / "x-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    (tmp_path / "x-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ConfigError, match="not an IDX file"):
        load(DataConfig(name=f"idx:{tmp_path}"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no '\\*images"):
        load(DataConfig(name=f"idx:{empty}"))


@pytest.mark.skipif(not MNIST_T10K.is_dir(), reason="real MNIST test set not present")
def test_real_mnist_t10k():
    ds = load(DataConfig(name=f"idx:{MNIST_T10K}", standardize="none"))
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10
    assert sum(ds.sizes().values()) == 10_000
    labels = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    np.testing.assert_array_equal(np.bincount(labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path)):
        ds = load(DataConfig(name="tfds:mnist", standardize="none", data_dir=str(tmp_path)))
    assert ds.image_shape == (28, 28, 1)
    assert ds.sizes()["test"] == 40  # mnist's own test split
    assert ds.sizes()["train"] + ds.sizes()["val"] == 40


def test_tfds_real_builder_prepared_offline(tmp_path):
    """A tiny dataset made with a real TFDS builder (download_and_prepare, TFRecords, as_dataset)."""
    pytest.importorskip("tensorflow_datasets")
    from tiny_tfds import TinyDigits  # noqa: F401  (registers the builder)

    ds = load(DataConfig(name="tfds:tiny_digits", standardize="none", data_dir=str(tmp_path)))
    assert ds.image_shape == (8, 8, 1)
    assert ds.sizes() == {"train": 54, "val": 6, "test": 30}
    assert (tmp_path / "tiny_digits").is_dir()  # prepared under data_dir
    with pytest.raises(ConfigError, match="TFDS has no dataset"):
        load(DataConfig(name="tfds:no_such_dataset_xyz", data_dir=str(tmp_path)))


def _write_mnist_like(folder, n, seed):
    """Raw (already extracted) MNIST IDX files of n random 28x28 digits; returns the paths and the labels."""
    rng = np.random.default_rng(seed)
    images, labels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)
    paths = {"data": folder / f"images-{seed}", "labels": folder / f"labels-{seed}"}
    paths["data"].write_bytes(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">III", n, 28, 28) + images.tobytes())
    paths["labels"].write_bytes(struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", n) + labels.tobytes())
    return paths, images, labels


def test_tfds_registered_mnist_builder_prepares_from_local_files(tmp_path, monkeypatch):
    """TFDS's own `mnist` builder, end to end (prepare, TFRecords, as_dataset), with its download
    step answered by local files and its split sizes cut to fit them."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.image_classification import mnist

    train, train_x, train_y = _write_mnist_like(tmp_path, 60, seed=1)
    test, _, test_y = _write_mnist_like(tmp_path, 20, seed=2)
    local = {"train_data": train["data"], "train_labels": train["labels"], "test_data": test["data"], "test_labels": test["labels"]}
    monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", 60)
    monkeypatch.setattr(mnist, "_TEST_EXAMPLES", 20)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", lambda self, urls: {k: str(local[k]) for k in urls})
    ds = load(DataConfig(name="tfds:mnist", standardize="none", val_fraction=0.0, data_dir=str(tmp_path / "tfds")))
    assert ds.sizes() == {"train": 60, "val": 0, "test": 20} and ds.image_shape == (28, 28, 1)
    assert sorted(ds.y_test.tolist()) == sorted(test_y.tolist())
    got = {x.tobytes() for x in (ds.x_train[..., 0] * 255).round().astype(np.uint8)}
    assert got == {x.tobytes() for x in train_x}  # the very images of the files, in TFDS's order
    assert (tmp_path / "tfds" / "mnist").is_dir()


def test_tfds_offline_is_one_clear_line(tmp_path, monkeypatch, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    import requests

    from bnlab.cli import main

    def offline(self, urls):
        raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com' ([Errno -2] Name or service not known)")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    code = main(["run", "configs/quickstart.yaml", "data.name=tfds:mnist", f"data.data_dir={tmp_path / 'empty'}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "could not be downloaded" in err and "data.data_dir" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "o").exists()


def test_tfds_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if `pip install bnlab` without [tfds]
    with pytest.raises(ConfigError, match=r"pip install 'bnlab\[tfds\]'"):
        load(DataConfig(name="tfds:mnist", data_dir="/nonexistent"))


def test_mnist1d_from_its_own_generator():
    """MNIST-1D: 40-sample signals, the standard 4,000/1,000 split (validation from the training
    part), the same data every time, and NumPy's global random state left alone."""
    pytest.importorskip("mnist1d")
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    ds = load(DataConfig(name="mnist1d", standardize="none", val_fraction=0.1))
    assert np.array_equal(np.random.get_state()[1], before)
    assert ds.image_shape == (40, 1, 1) and ds.num_classes == 10
    assert ds.sizes() == {"train": 3600, "val": 400, "test": 1000}
    again = load(DataConfig(name="mnist1d", standardize="none", val_fraction=0.1))
    assert np.array_equal(ds.x_test, again.x_test) and set(np.unique(ds.y_train)) == set(range(10))
    small = load(DataConfig(name="mnist1d", mnist1d_samples=500, val_fraction=0.0))
    assert small.sizes() == {"train": 400, "val": 0, "test": 100}


def test_mnist1d_is_generated_once_and_read_back_from_its_file(tmp_path, monkeypatch):
    """Generating takes seconds in every process: the first writes the set to BNLAB_DATA_CACHE, the
    later ones read the same arrays back ('off': always generated)."""
    pytest.importorskip("mnist1d")
    from bnlab.data import sources

    monkeypatch.setenv("BNLAB_DATA_CACHE", str(tmp_path))
    cfg = DataConfig(name="mnist1d", mnist1d_samples=300)
    first = sources.load_mnist1d("", cfg)
    assert len(list(tmp_path.glob("mnist1d-300-v*.npz"))) == 1 and not list(tmp_path.glob("*.tmp*"))

    def again(samples):
        raise AssertionError("generated again")

    monkeypatch.setattr(sources, "_generate_mnist1d", again)
    second = sources.load_mnist1d("", cfg)
    for a, b in ((first.train, second.train), (first.test, second.test)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    monkeypatch.setenv("BNLAB_DATA_CACHE", "off")
    with pytest.raises(AssertionError, match="generated again"):
        sources.load_mnist1d("", cfg)


def test_mnist1d_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ConfigError, match=r"pip install 'bnlab\[claims\]'"):
        load(DataConfig(name="mnist1d"))


def test_evidence_sequences_come_at_every_length_with_the_same_examples():
    cfg = DataConfig(name="evidence", synthetic_shape=[5, 3, 1], synthetic_size=400, evidence_noise=0.5, eval_lengths=[2, 12])
    ds = load(cfg)
    assert ds.x_train.shape[1:] == (5, 3, 1) and ds.sizes() == {"train": 288, "val": 32, "test": 80}
    assert set(ds.extra_tests) == {"test_len2", "test_len12"}
    x12, y12 = ds.extra_tests["test_len12"]
    assert x12.shape == (80, 12, 3, 1) and ds.extra_tests["test_len2"][0].shape == (80, 2, 3, 1)
    np.testing.assert_array_equal(y12, ds.y_test)
    # the same glimpses, more of them (paired across lengths), standardised with the training split's statistics like the test split
    np.testing.assert_array_equal(x12[:, :5], ds.x_test)
    np.testing.assert_array_equal(ds.extra_tests["test_len2"][0], ds.x_test[:, :2])
    raw = DATASETS.get("evidence")("", cfg)
    # with little noise the class template is recoverable from the mean glimpse: the label is in the sequence
    means = np.stack([raw.train[0][raw.train[1] == c].mean((0, 1)).ravel() for c in range(10)])
    guess = np.argmin(((raw.test[0].mean(1).reshape(80, 1, 3) - means[None]) ** 2).sum(-1), 1)
    assert (guess == raw.test[1]).mean() > 0.8


def test_eval_lengths_need_the_evidence_task_and_a_recurrent_model(capsys):
    from bnlab.cli import main

    for extra in (["model.name=lstm", "data.name=digits"], ["model.name=mlp", "data.name=evidence"], ["data.eval_lengths=[0]"]):
        assert main(["run", "/dev/null", "data.eval_lengths=[8]", "train.steps=3", *extra]) == 2
        assert "data.eval_lengths" in capsys.readouterr().err
