"""Models (registry): feed-forward and recurrent, built from a model config for a dataset's shapes."""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from ..config.schema import ModelConfig
from ..registry import Registry
from .feedforward import CNN, MLP, DeepLinear
from .recurrent import LSTM, SimpleRNN

MODELS: Registry[Callable[..., nnx.Module]] = Registry("model", "model.name")
MODELS.register("mlp", doc="fully connected: model.depth hidden layers of model.width units, then a linear classifier")(MLP)
MODELS.register("cnn", doc="small VGG-style net: model.depth stages of model.convs_per_stage 3x3 convs, 2x2 max pooling")(CNN)
MODELS.register("dln", doc="deep linear network (Santurkar et al. 2018): linear layers, no biases, optional norm between them")(DeepLinear)
MODELS.register("rnn", doc="simple (Elman) RNN reading an image row by row")(SimpleRNN)
MODELS.register("lstm", doc="LSTM reading an image row by row")(LSTM)

RECURRENT = ("rnn", "lstm")  # models that read an image row by row and take the recurrent norms
CONVOLUTIONAL = ("cnn",)  # models whose layers are convolutions (train.model_fns compiles their programs for Eigen's matmuls on a CPU)


def build(cfg: ModelConfig, image_shape: tuple[int, ...], num_classes: int, seed: int) -> nnx.Module:
    return MODELS.get(cfg.name)(tuple(image_shape), num_classes, cfg, rngs=nnx.Rngs(params=seed))
