"""Models (registry): feed-forward and recurrent, built from a model config for a dataset's shapes."""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from ..config.schema import Config, ModelConfig
from ..registry import Registry
from .activations import ACTIVATIONS
from .feedforward import CNN, MLP, DeepLinear
from .initializers import INITIALIZERS
from .norms import NORMS
from .recurrent import LSTM, RNN_NORMS, SimpleRNN

MODELS: Registry[Callable[..., nnx.Module]] = Registry("model", "model.name")
FEED_FORWARD = ("depth", "width", "norm", "activation", "init")


def _recurrent_options(cfg: Config):
    m = cfg.model
    if m.rnn_norm_paths not in ("both", "input", "hidden"):
        yield f"model.rnn_norm_paths: unknown {m.rnn_norm_paths!r}; allowed: both, input, hidden"
    if m.dropout:
        yield f"model.dropout: the recurrent models have no dropout; allowed: 0 (got {m.dropout})"


MODELS.register(
    "mlp", doc="fully connected: model.depth hidden layers of model.width units, then a linear classifier", options=FEED_FORWARD, traced=("dropout",)
)(MLP)
MODELS.register(
    "cnn",
    doc="small VGG-style net: model.depth stages of model.convs_per_stage 3x3 convs, 2x2 max pooling (3x1 and 2x1 on a 1-D signal such as MNIST-1D)",
    options=FEED_FORWARD + ("convs_per_stage",),
    traced=("dropout",),
)(CNN)
MODELS.register(
    "dln",
    doc="deep linear network (Santurkar et al. 2018): linear layers, no biases, optional norm between them",
    options=FEED_FORWARD,
    traced=("dropout",),
)(DeepLinear)
RECURRENT_OPTIONS = ("depth", "width", "norm", "activation", "init", "rnn_norm_paths")
MODELS.register(
    "rnn", doc="simple (Elman) RNN reading an image row by row", options=RECURRENT_OPTIONS, initial=("recurrent_gain",), check=_recurrent_options
)(SimpleRNN)
MODELS.register("lstm", doc="LSTM reading an image row by row", options=RECURRENT_OPTIONS, initial=("recurrent_gain",), check=_recurrent_options)(
    LSTM
)

RECURRENT = ("rnn", "lstm")  # models that read an image row by row and take the recurrent norms
CONVOLUTIONAL = ("cnn",)  # models whose layers are convolutions (train.model_fns compiles their programs for Eigen's matmuls on a CPU)


def build(cfg: ModelConfig, image_shape: tuple[int, ...], num_classes: int, seed: int) -> nnx.Module:
    return MODELS.get(cfg.name)(tuple(image_shape), num_classes, cfg, rngs=nnx.Rngs(params=seed))


def norms_of(model_name: str) -> Registry:
    """The norm registry a model takes its `model.norm` from."""
    return RNN_NORMS if model_name in RECURRENT else NORMS


def components(m: ModelConfig) -> list[tuple[Registry, str]]:
    """The registered components a model config selects (model, norm, initialiser, activation)."""
    return [(MODELS, m.name), (norms_of(m.name), m.norm), (INITIALIZERS, m.init), (ACTIVATIONS, m.activation)]
