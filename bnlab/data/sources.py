"""Dataset loaders (registry): each returns the splits its source has, as float32 NHWC images and
int32 labels (float targets for regression). `data.name` picks one: `digits`, `synthetic`,
`linear_regression`, `evidence`, `mnist1d`, `idx:<folder>` or `tfds:<name>`. Splitting, subsets and standardisation are
shared, in `bnlab.data.dataset`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config.schema import DataConfig
from ..errors import ConfigError
from ..registry import Registry

Split = tuple[np.ndarray, np.ndarray]  # images (N, H, W, C) float32, labels (N,) int32


@dataclass(frozen=True)
class Source:
    """What a loader found: a training split, and test/validation splits where the source has them."""

    train: Split
    test: Split | None = None
    val: Split | None = None
    extra_tests: dict[str, Split] = field(default_factory=dict)  # more test splits, e.g. longer sequences: name -> split


Loader = Callable[[str, DataConfig], Source]
DATASETS: Registry[Loader] = Registry("dataset", "data.name")


def parse_name(name: str) -> tuple[str, str]:
    """'idx:/data/mnist' -> ('idx', '/data/mnist'); 'digits' -> ('digits', '')."""
    kind, _, arg = name.partition(":")
    DATASETS.get(kind)
    if kind in ("idx", "tfds") and not arg:
        raise ConfigError(f"data.name: {kind} needs an argument, e.g. {kind}:{'path/to/folder' if kind == 'idx' else 'mnist'}")
    if kind not in ("idx", "tfds") and arg:
        raise ConfigError(f"data.name: {kind} takes no ':' argument, got {name!r}")
    return kind, arg


def _as_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:  # (N, H, W) grey images
        x = x[..., None]
    if x.ndim != 4:
        raise ConfigError(f"data: expected images of shape (N, H, W[, C]), got {x.shape}")
    return x


DIGITS = Path(__file__).with_name("digits.csv.gz")  # see DIGITS.md beside it: source and licence


@DATASETS.register("digits")
def load_digits(arg: str, cfg: DataConfig) -> Source:
    """The 1,797 real 8x8 handwritten digits of UCI's optdigits test set, as scikit-learn ships them, scaled to [0, 1] (embedded, no download)."""
    data = np.loadtxt(DIGITS, delimiter=",")  # 64 pixel counts in 0..16, then the label, per row
    return Source(train=(_as_images(data[:, :-1].reshape(-1, 8, 8) / 16.0), data[:, -1].astype(np.int32)))


@DATASETS.register("synthetic", options=("synthetic_size", "synthetic_shape", "synthetic_classes"))
def load_synthetic(arg: str, cfg: DataConfig) -> Source:
    """Gaussian class clusters of any size and shape, for tests and scaling benchmarks."""
    rng = np.random.default_rng(cfg.split_seed)
    shape = tuple(cfg.synthetic_shape)
    dim = int(np.prod(shape))
    means = rng.normal(size=(cfg.synthetic_classes, dim)) / np.sqrt(dim) * 4.0
    y = rng.integers(0, cfg.synthetic_classes, size=cfg.synthetic_size).astype(np.int32)
    x = means[y] + rng.normal(size=(cfg.synthetic_size, dim)) / np.sqrt(dim) * 4.0
    return Source(train=(x.reshape((-1,) + shape).astype(np.float32), y))


@DATASETS.register("linear_regression", options=("synthetic_size", "synthetic_shape", "regression_outputs"))
def load_linear_regression(arg: str, cfg: DataConfig) -> Source:
    """Santurkar et al.'s deep-linear-network task: x ~ N(0, I), target A x with a random A."""
    rng = np.random.default_rng(cfg.split_seed)
    shape = tuple(cfg.synthetic_shape)
    dim = int(np.prod(shape))
    A = rng.normal(size=(cfg.regression_outputs, dim)) / np.sqrt(dim)
    x = rng.normal(size=(cfg.synthetic_size, dim))
    return Source(train=(x.reshape((-1,) + shape).astype(np.float32), (x @ A.T).astype(np.float32)))


@DATASETS.register("evidence", options=("synthetic_size", "synthetic_shape", "synthetic_classes", "evidence_noise", "eval_lengths"))
def load_evidence(arg: str, cfg: DataConfig) -> Source:
    """Evidence accumulation over time, a sequence task defined at any length: step t shows a noisy
    glimpse x_t = mu_y + data.evidence_noise * e_t of the class template mu_y (templates ~ N(0, I), fixed
    by data.split_seed); the label is y. data.synthetic_shape = [T, features, 1]. The test split also
    comes at each length in data.eval_lengths, as `test_len<L>`: the same examples with more or fewer
    glimpses (the first L), so accuracies across lengths are paired."""
    rng = np.random.default_rng(cfg.split_seed)
    steps, features = cfg.synthetic_shape[0], cfg.synthetic_shape[1] * cfg.synthetic_shape[2]
    means = rng.normal(size=(cfg.synthetic_classes, features))
    n_test = max(1, int(round(cfg.test_fraction * cfg.synthetic_size)))

    def split(n: int, length: int) -> Split:
        y = rng.integers(0, cfg.synthetic_classes, size=n).astype(np.int32)
        x = means[y][:, None, :] + cfg.evidence_noise * rng.normal(size=(n, length, features))
        return x.reshape((n, length) + tuple(cfg.synthetic_shape[1:])).astype(np.float32), y

    train = split(cfg.synthetic_size - n_test, steps)
    x_test, y_test = split(n_test, max([steps, *cfg.eval_lengths]))
    extra = {f"test_len{n}": (x_test[:, :n], y_test) for n in cfg.eval_lengths}
    return Source(train=train, test=(x_test[:, :steps], y_test), extra_tests=extra)


def _mnist1d_cache() -> Path | None:
    """Where generated MNIST-1D sets are kept (BNLAB_DATA_CACHE=dir, or 'off'; default ~/.cache/bnlab/data)."""
    path = os.environ.get("BNLAB_DATA_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "bnlab", "data"))
    return None if path.lower() in ("", "0", "off", "none") else Path(path)


def _require_mnist1d() -> None:
    try:
        import mnist1d.data  # noqa: F401
    except ImportError:
        raise ConfigError("data.name: mnist1d needs the mnist1d package; pip install 'bnlab[claims]'") from None


def _generate_mnist1d(samples: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = samples
    state = np.random.get_state()  # the generator seeds NumPy's global state (args.seed = 42)
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


@DATASETS.register("mnist1d", options=("mnist1d_samples",))
def load_mnist1d(arg: str, cfg: DataConfig) -> Source:
    """MNIST-1D (Greydanus & Kobak 2024): 1-D signals of the ten digits, 40 samples long, from the
    `mnist1d` package's own generator (no download); 4,000/1,000 train/test by default. Generating
    takes seconds per process, so each size is kept in a file after its first generation (the
    generator is deterministic: its own seed, 42) and read back by every later process."""
    from importlib.metadata import version

    _require_mnist1d()
    cache = _mnist1d_cache()
    path = None if cache is None else cache / f"mnist1d-{cfg.mnist1d_samples}-v{version('mnist1d')}.npz"
    if path is not None and path.exists():
        with np.load(path) as f:
            d = {k: f[k] for k in f.files}
    else:
        d = _generate_mnist1d(cfg.mnist1d_samples)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **d)
            os.replace(tmp, path)  # atomic: a process reading it never sees half a file

    def signals(x: np.ndarray) -> np.ndarray:  # (N, 40) -> (N, 40, 1, 1): length as height
        return x.astype(np.float32)[:, :, None, None]

    return Source(train=(signals(d["x"]), d["y"].astype(np.int32)), test=(signals(d["x_test"]), d["y_test"].astype(np.int32)))


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic 0x0000 <dtype> <ndim>, big-endian dims, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"data.name: {path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise ConfigError(f"data.name: {path} holds {len(body)} data bytes, its header promises {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _idx_pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    """{'train': (images, labels), 't10k': ...} keyed by the file-name prefix (MNIST naming)."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for images in sorted(folder.glob("*images-idx3-ubyte*")):
        prefix = images.name.split("images-idx3-ubyte")[0]
        labels = [p for p in folder.glob(prefix + "labels-idx1-ubyte*")]
        if labels:
            pairs[prefix.rstrip("-_.")] = (images, sorted(labels)[0])
    return pairs


@DATASETS.register("idx")
def load_idx(arg: str, cfg: DataConfig) -> Source:
    """MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST) in a folder: train-* and/or t10k-* pairs."""
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"data.name: idx folder {str(folder)!r} does not exist")
    pairs = _idx_pairs(folder)
    if not pairs:
        raise ConfigError(f"data.name: no '*images-idx3-ubyte[.gz]' with matching '*labels-idx1-ubyte[.gz]' in {folder}")

    def read(pair: tuple[Path, Path]) -> Split:
        x, y = read_idx(pair[0]), read_idx(pair[1])
        if len(x) != len(y):
            raise ConfigError(f"data.name: {pair[0].name} has {len(x)} images but {pair[1].name} has {len(y)} labels")
        return _as_images(x / 255.0 if x.dtype == np.uint8 else x), y.astype(np.int32)

    train_key = "train" if "train" in pairs else None
    test_key = "t10k" if "t10k" in pairs else ("test" if "test" in pairs else None)
    if train_key and test_key:
        return Source(train=read(pairs[train_key]), test=read(pairs[test_key]))
    if len(pairs) == 1:  # a single set (e.g. only MNIST's t10k files): all of it is split later
        return Source(train=read(next(iter(pairs.values()))))
    raise ConfigError(f"data.name: cannot tell train from test among IDX prefixes {sorted(pairs)} in {folder}")


_NETWORK_ERRORS = ("ConnectionError", "NameResolutionError", "MaxRetryError", "Timeout", "DownloadError", "gaierror", "URLError")


def _network_error(err: BaseException) -> BaseException | None:
    """The network failure behind an exception, if any (TFDS wraps them several layers deep)."""
    seen = err
    while seen is not None:
        if any(name in type(seen).__name__ for name in _NETWORK_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _import_tfds():
    """TensorFlow Datasets and TensorFlow, quiet, or a one-line error naming the extra that installs them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TensorFlow only decodes images; this also keeps its start-up notice away
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ConfigError(
            f"data.name: tfds:<name> datasets need TensorFlow Datasets and TensorFlow ({err.name} is missing), which the default "
            "install leaves out: pip install 'bnlab[tfds]'"
        ) from None
    import logging

    for noisy in ("absl", "urllib3", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    tf.config.set_visible_devices([], "GPU")  # TensorFlow only reads data; the accelerator is JAX's
    tfds.disable_progress_bar()
    # TFDS retries a failed download 10 times with exponential backoff (~3.5 minutes offline): 3 are enough
    from tensorflow_datasets.core.download import downloader

    downloader.MAX_RETRIES = min(getattr(downloader, "MAX_RETRIES", 3), 3)
    return tfds


@DATASETS.register("tfds", options=("data_dir",))
def load_tfds(arg: str, cfg: DataConfig) -> Source:
    """Any TFDS image-classification dataset (mnist, fashion_mnist, cifar10, ...); honours data.data_dir."""
    tfds = _import_tfds()
    try:
        builder = tfds.builder(arg, data_dir=cfg.data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ConfigError(f"data.name: TFDS has no dataset {arg!r} ({str(err).splitlines()[0]})") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints its own progress notes
            builder.download_and_prepare()
    except Exception as err:
        cause = _network_error(err)
        if cause is None:
            raise
        where = cfg.data_dir or "TFDS's default ~/tensorflow_datasets"
        raise ConfigError(
            f"data.name: tfds:{arg} is not prepared in {where} and could not be downloaded ({type(cause).__name__}); "
            f"prepare it where there is internet access (tfds.builder({arg!r}, data_dir=DIR).download_and_prepare()) and "
            "give that folder as data.data_dir=DIR, or use idx:<folder> for MNIST-format files"
        ) from None
    # builders whose info lists no splits (tfds.testing.mock_data) are asked for the usual names
    splits = set(builder.info.splits.keys()) or {"train", "test"}
    if "train" not in splits:
        raise ConfigError(f"data.name: TFDS dataset {arg!r} has no 'train' split (it has {sorted(splits)})")

    def read(split: str) -> Split:
        ds = builder.as_dataset(split=split, as_supervised=True).batch(8192)
        xs, ys = zip(*tfds.as_numpy(ds))
        x = np.concatenate(xs)
        return _as_images(x / 255.0 if x.dtype == np.uint8 else x), np.concatenate(ys).astype(np.int32)

    val_name = next((s for s in ("validation", "valid", "val") if s in splits), None)
    return Source(
        train=read("train"),
        test=read("test") if "test" in splits else None,
        val=read(val_name) if val_name else None,
    )
