"""The typed config schema: a tree of dataclasses with every key, its type and its default.

`bnlab.config.load` merges YAML and overrides onto it strictly (an unknown key or a wrong type is
an error naming the full key); `bnlab.runner.validate` checks ranges and registry names.

BN momentum follows the Flax/Keras convention:
    running = momentum * running + (1 - momentum) * batch_statistic
so PyTorch's `momentum=0.1` is `model.bn_momentum=0.9` here. Default 0.99, epsilon 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class DataConfig:
    name: str = "digits"  # digits | mnist1d | idx:<folder> | tfds:<name> | synthetic | linear_regression | evidence
    data_dir: Optional[str] = None  # TFDS data_dir (None: TFDS's default, ~/tensorflow_datasets)
    val_fraction: float = 0.1  # of the training data, when the dataset has no validation split
    test_fraction: float = 0.2  # of all data, when the dataset has no test split
    split_seed: int = 0  # the split is the same for every run seed
    subset: Optional[int] = None  # keep only this many training examples
    standardize: str = "channel"  # none | feature | channel; statistics from the training split only
    synthetic_size: int = 2000  # `synthetic` only: number of examples
    synthetic_shape: List[int] = field(default_factory=lambda: [8, 8, 1])  # H, W, C
    synthetic_classes: int = 10
    regression_outputs: int = 10  # `linear_regression` only: dimension of the target A x
    evidence_noise: float = 3.0  # `evidence` only: std of the noise on each glimpse of the class template
    eval_lengths: List[int] = field(default_factory=list)  # `evidence` only: also test on sequences of these lengths (test_len<L>_acc)
    mnist1d_samples: int = 5000  # `mnist1d` only: examples generated (80% train, 20% test: 4,000/1,000 by default)


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | cnn
    depth: int = 3  # hidden layers (mlp) or conv stages (cnn)
    width: int = 100  # hidden units (mlp) or channels of the first stage (cnn, doubled per stage)
    convs_per_stage: int = 1  # cnn only
    norm: str = "batch"  # none | batch | layer | group
    activation: str = "relu"
    init: str = "default"  # default | lecun_normal | glorot_normal | he_normal | normal
    init_std: float = 0.01  # init=normal only: Ioffe & Szegedy's "small random Gaussian"
    init_scale: float = 1.0  # multiplies every kernel initialiser, for deliberately bad inits
    dropout: float = 0.0
    bn_momentum: float = 0.99  # Flax/Keras convention, see module docstring
    norm_epsilon: float = 1e-5
    groups: int = 4  # group norm: number of groups
    ghost_batch_size: int = 16  # ghost_batch: examples per virtual batch (must divide train.batch_size)
    whiten_group_size: int = 16  # whiten: features whitened together (must divide the width; 0: all of them)
    lp_p: float = 2.0  # lp: 1, 2 or inf
    renorm_rmax: float = 3.0  # batch_renorm: r is clipped to [1/rmax, rmax]
    renorm_dmax: float = 5.0  # batch_renorm: d is clipped to [-dmax, dmax]
    renorm_relax_from: int = 0  # batch_renorm with a ramp: r = 1, d = 0 until this step (Ioffe 2017: 5000) ...
    renorm_rmax_at: int = 0  # ... then rmax grows linearly from 1 to reach renorm_rmax at this step (40000); 0: no ramp
    renorm_dmax_at: int = 0  # ... and dmax from 0 to reach renorm_dmax at this step (25000); 0: no ramp
    norm_gamma_init: float = 1.0  # initial γ of every norm with a scale (Cooijmans et al. 2016 use 0.1)
    rnn_norm_paths: str = "both"  # rnn/lstm: normalise the input-to-hidden, hidden-to-hidden or both paths
    recurrent_gain: float = 1.0  # rnn/lstm: the orthogonal recurrent kernel times this (above 1: exploding gradients, Pascanu et al. 2013)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | momentum | adam
    lr: float = 0.1
    lr_reference_batch: Optional[int] = None  # lr scaled linearly with the batch (Goyal et al. 2017): lr is the lr at this batch size
    momentum: float = 0.9  # momentum only
    nesterov: bool = False  # momentum only
    b1: float = 0.9  # adam only
    b2: float = 0.999  # adam only
    schedule: str = "constant"  # constant | cosine | linear | step
    warmup_steps: int = 0  # linear warm-up from 0, before the schedule
    final_lr_fraction: float = 0.0  # cosine/linear: lr at the end as a fraction of lr
    decay_boundaries: List[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of training
    decay_factor: float = 0.1  # step: lr multiplier at each boundary
    weight_decay: float = 0.0  # on kernels only; L2 in the gradient for sgd/momentum, decoupled (AdamW) for adam
    # gradient clipping with Keras semantics: clipnorm or global_clipnorm (not both), then clipvalue
    clipnorm: Optional[float] = None  # rescale each parameter's gradient to at most this l2 norm
    global_clipnorm: Optional[float] = None  # rescale the whole gradient to at most this global l2 norm
    clipvalue: Optional[float] = None  # clip each gradient element to [-v, v]


@dataclass
class TrainConfig:
    batch_size: int = 60
    full_batch: bool = False  # use the whole training split as every batch (ignores batch_size)
    steps: Optional[int] = None  # give exactly one of steps and epochs
    epochs: Optional[float] = None
    log_every: int = 100  # steps per compiled chunk; metrics and evaluation after each
    eval_batch_size: int = 1000
    # BN statistics for evaluation: running averages | population (Ioffe Alg. 2) | population_biased (its variance without Bessel's
    # correction, as the running averages) | both (population ones as population/<metric>) | all (both, and population_biased/<metric>)
    eval_bn_stats: str = "running"
    eval_train: bool = False  # also evaluate on the training split in evaluation mode (train_eval_loss/acc: the train-test gap)
    checkpoint_every: int = 0  # steps between orbax checkpoints (a multiple of log_every); 0: off


@dataclass
class Schedule:
    """When a diagnostic runs: the union of every `every` steps (from 0), the steps listed in `at`,
    and `log_spaced` steps spread evenly in log(step) between 1 and the last step (plus step 0)."""

    every: int = 0
    at: List[int] = field(default_factory=list)
    log_spaced: int = 0


BN_MODES = ("batch", "running")  # a probe's BN: statistics of the probe batch, or the running averages


@dataclass
class ActivationsConfig:
    """Ioffe & Szegedy Fig. 1(b,c): percentiles of the nonlinearity's input over training."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=lambda: Schedule(every=100))
    units: int = 3  # the first `units` units (channels) of each hidden layer are followed
    batch_size: int = 500  # fixed evaluation batch: the first examples of the validation split
    bn_mode: str = "batch"  # Ioffe & Szegedy Sec. 4.1 measure the training-mode network N^tr_BN: batch statistics
    point: str = "nonlinearity_input"  # or "pre_norm": the norm's input W x (the same for a net without norm)
    saturation: float = 0.98  # sigmoid/tanh unit saturated when its output is beyond 98% of the way to an end


@dataclass
class LandscapeConfig:
    """Santurkar et al. Fig. 4: loss range, gradient predictiveness, effective beta-smoothness."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=lambda: Schedule(every=100))
    # eta = the step's lr * these: Santurkar App. A.2.2 use [1/2, 4] for VGG; for the deep linear network [1/100, 30]
    eta_multipliers: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 3.0, 4.0])
    bn_mode: str = "batch"


@dataclass
class ICSConfig:
    """Santurkar et al. Def. 2.1: gradient change of each layer from the update of the layers below."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=lambda: Schedule(every=100))
    bn_mode: str = "batch"


@dataclass
class HessianConfig:
    """Curvature on a fixed training batch: top eigenvalues, trace, spectral density, gradient share."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=lambda: Schedule(log_spaced=6))
    batch_size: int = 256  # the first examples of the training split, the same at every measurement
    bn_mode: str = "batch"
    top_k: int = 1
    method: str = "lanczos"  # lanczos (with full reorthogonalisation) | power (top eigenvalue by magnitude)
    iterations: int = 20  # Lanczos steps or power iterations for the top eigenvalues
    trace_probes: int = 10  # Hutchinson Rademacher probes; 0: no trace
    density_probes: int = 0  # stochastic Lanczos quadrature runs; 0: no spectral density
    density_steps: int = 90
    seed: int = 0


@dataclass
class SurfaceConfig:
    """Li et al. 2018: loss along filter-normalised random directions around the final weights."""

    enabled: bool = False
    dims: int = 1  # 1: a curve; 2: a grid
    points: int = 21  # per direction
    span: float = 1.0  # coordinates in [-span, span]
    batch_size: int = 1000  # the first training examples
    bn_params: str = "zero"  # zero: biases and BN gamma/beta stay put (Li et al.'s ignore='biasbn') | copy: they move along themselves (d = w)
    bn_stats: str = "running"  # running: the trained running statistics | batch: statistics of the evaluation batch
    seed: int = 0


@dataclass
class DiagnosticsConfig:
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    ics: ICSConfig = field(default_factory=ICSConfig)
    hessian: HessianConfig = field(default_factory=HessianConfig)
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)


@dataclass
class SweepConfig:
    grid: Dict[str, List[Any]] = field(default_factory=dict)  # product over these axes
    zip: Dict[str, List[Any]] = field(default_factory=dict)  # these axes vary together


@dataclass
class Config:
    name: str = "run"  # results go to results/<name> unless --out is given
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
