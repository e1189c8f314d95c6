"""Typed config schema, YAML loading with `key=value` overrides, and validation.

The schema is a tree of dataclasses merged strictly by OmegaConf: a key that is not in the
schema, or a value of the wrong type, is an error naming the full key. Range and registry
checks follow in `validate`. Everything is checked before any work starts.

BN momentum follows the Flax/Keras convention:
    running = momentum * running + (1 - momentum) * batch_statistic
so PyTorch's `momentum=0.1` is `model.bn_momentum=0.9` here. Default 0.99, epsilon 1e-5.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError


@dataclass
class DataConfig:
    name: str = "digits"  # digits | idx:<folder> | tfds:<name> | synthetic
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
    whiten_group_size: int = 16  # whiten: features whitened together (must divide the width)
    lp_p: float = 2.0  # lp: 1, 2 or inf
    renorm_rmax: float = 3.0  # batch_renorm: r is clipped to [1/rmax, rmax]
    renorm_dmax: float = 5.0  # batch_renorm: d is clipped to [-dmax, dmax]
    norm_gamma_init: float = 1.0  # initial γ of every norm with a scale (Cooijmans et al. 2016 use 0.1)
    rnn_norm_paths: str = "both"  # rnn/lstm: normalise the input-to-hidden, hidden-to-hidden or both paths


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | momentum | adam
    lr: float = 0.1
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
    eval_bn_stats: str = "running"  # BN statistics for evaluation: running averages | population (Ioffe Alg. 2)
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
    bn_mode: str = "running"
    saturation: float = 0.98  # sigmoid/tanh unit saturated when its output is beyond 98% of the way to an end


@dataclass
class LandscapeConfig:
    """Santurkar et al. Fig. 4: loss range, gradient predictiveness, effective beta-smoothness."""

    enabled: bool = False
    schedule: Schedule = field(default_factory=lambda: Schedule(every=100))
    eta_multipliers: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 3.0, 4.0])  # eta = optim.lr * these
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
    bn_params: str = "zero"  # zero: biases and BN gamma/beta stay put (Li et al.) | filter: they move too, norm-scaled
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


def _omegaconf_message(err: OmegaConfBaseException) -> str:
    """Turn OmegaConf's multi-line message into `key: what is wrong; allowed: ...`."""
    key = getattr(err, "full_key", None) or "<config>"
    first = str(getattr(err, "msg", err)).strip().splitlines()[0]
    if first.startswith("Key '") and "not in" in first:  # OmegaConf's wording for an unknown key
        parent = key.rpartition(".")[0]
        node = OmegaConf.structured(Config)
        try:
            sub = OmegaConf.select(node, parent) if parent else node
            allowed = ", ".join(sub.keys()) if isinstance(sub, DictConfig) else ""
        except Exception:
            allowed = ""
        return f"{key}: unknown key" + (f"; allowed keys here: {allowed}" if allowed else "")
    return f"{key}: {first}"


def _schema() -> DictConfig:
    return OmegaConf.structured(Config)


def load(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """YAML file (optional) + `section.key=value` overrides, merged strictly onto the schema."""
    cfg = _schema()
    try:
        if path is not None:
            path = Path(path)
            if not path.exists() or path.is_dir():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            loaded = OmegaConf.load(path) if path.stat().st_size else OmegaConf.create({})
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"{path}: expected a mapping of sections at the top level")
            cfg = OmegaConf.merge(cfg, loaded)
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected section.key=value, e.g. optim.lr=0.1")
            key, _, value = item.partition("=")
            if key.startswith(("sweep.grid.", "sweep.zip.")):
                # the axis name itself holds dots (sweep.grid.optim.lr=[0.1,1]): set it as one key
                _, kind, axis = key.split(".", 2)
                values = yaml.safe_load(value)
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"{key}: must be a non-empty list of values, e.g. {key}=[0,1,2]; got {value!r}")
                cfg.sweep[kind][axis] = values
                continue
            if OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
                raise ConfigError(f"{key}: unknown key; see `bnlab run --help` and the schema in bnlab/config.py")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        swept = set(cfg.sweep.grid) | set(cfg.sweep.zip)
        for item in overrides:
            key = item.partition("=")[0]
            if key in swept:
                kind = "grid" if key in cfg.sweep.grid else "zip"
                raise ConfigError(f"{key}: this key is swept by the config; override the axis instead, e.g. sweep.{kind}.{key}=[...]")
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_message(err)) from None
    except Exception as err:  # YAML syntax errors and the like
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{path}: {err}") from None
    return cfg


def to_object(cfg: DictConfig) -> Config:
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def with_values(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of `cfg` with dotted keys set, type-checked against the schema."""
    out = copy.deepcopy(cfg)
    for key, value in values.items():
        if OmegaConf.select(out, key, default="<missing>") == "<missing>" or key.startswith("sweep"):
            raise ConfigError(f"sweep axis {key!r}: unknown key; an axis must be a config key such as optim.lr")
        try:
            OmegaConf.update(out, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise ConfigError(f"sweep axis {key}={value!r}: {_omegaconf_message(err)}") from None
    return out


# ---------------------------------------------------------------------------------------------
# Semantic validation: ranges and registry names. Each problem names its key and what is allowed.

STANDARDIZE = ("none", "feature", "channel")
SCHEDULES = ("constant", "cosine", "linear", "step")


def validate(cfg: Config) -> None:
    """Raise ConfigError listing every problem found (not just the first)."""
    from . import data, models, norms, optim  # registries; imported here to keep `--help` fast

    problems: list[str] = []

    def check(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    def registered(registry, name: str) -> None:
        try:
            registry.get(name)
        except ConfigError as err:
            problems.append(str(err))

    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    try:
        data.parse_name(d.name)
    except ConfigError as err:
        problems.append(str(err))
    check(0 <= d.val_fraction < 1, f"data.val_fraction: must be in [0, 1), got {d.val_fraction}")
    check(0 < d.test_fraction < 1, f"data.test_fraction: must be in (0, 1), got {d.test_fraction}")
    check(d.val_fraction + d.test_fraction < 1, "data.val_fraction + data.test_fraction: must be < 1")
    check(d.subset is None or d.subset > 0, f"data.subset: must be a positive count or null, got {d.subset}")
    check(d.standardize in STANDARDIZE, f"data.standardize: unknown {d.standardize!r}; allowed: {', '.join(STANDARDIZE)}")
    check(d.synthetic_size > 0, f"data.synthetic_size: must be > 0, got {d.synthetic_size}")
    check(len(d.synthetic_shape) == 3 and all(s > 0 for s in d.synthetic_shape),
          f"data.synthetic_shape: must be three positive sizes [H, W, C], got {list(d.synthetic_shape)}")
    check(d.synthetic_classes >= 2, f"data.synthetic_classes: must be >= 2, got {d.synthetic_classes}")
    check(d.regression_outputs >= 1, f"data.regression_outputs: must be >= 1, got {d.regression_outputs}")

    registered(models.MODELS, m.name)
    recurrent = m.name in models.recurrent.RECURRENT
    registered(models.recurrent.RNN_NORMS if recurrent else norms.NORMS, m.norm)
    if recurrent:
        check(m.rnn_norm_paths in ("both", "input", "hidden"), f"model.rnn_norm_paths: unknown {m.rnn_norm_paths!r}; allowed: both, input, hidden")
        check(not cfg.diagnostics.ics.enabled, "diagnostics.ics: defined for feed-forward layers (mlp, cnn, dln), not recurrent models")
        check(t.eval_bn_stats == "running", "train.eval_bn_stats: population statistics are implemented for mlp, cnn and dln, not recurrent models")
    registered(models.ACTIVATIONS, m.activation)
    registered(models.INITIALIZERS, m.init)
    check(m.depth >= 1, f"model.depth: must be >= 1, got {m.depth}")
    check(m.width >= 1, f"model.width: must be >= 1, got {m.width}")
    check(m.convs_per_stage >= 1, f"model.convs_per_stage: must be >= 1, got {m.convs_per_stage}")
    check(m.init_std > 0, f"model.init_std: must be > 0, got {m.init_std}")
    check(m.init_scale > 0, f"model.init_scale: must be > 0, got {m.init_scale}")
    check(0 <= m.dropout < 1, f"model.dropout: must be in [0, 1), got {m.dropout}")
    check(0 <= m.bn_momentum < 1, f"model.bn_momentum: must be in [0, 1) (Flax convention, 0.99 default), got {m.bn_momentum}")
    check(m.norm_epsilon > 0, f"model.norm_epsilon: must be > 0, got {m.norm_epsilon}")
    check(m.groups >= 1, f"model.groups: must be >= 1, got {m.groups}")
    if m.norm == "group":
        check(m.width % m.groups == 0, f"model.groups: must divide model.width ({m.width}), got {m.groups}")
    if m.norm == "ghost_batch" and not t.full_batch:
        check(m.ghost_batch_size >= 1 and t.batch_size % m.ghost_batch_size == 0,
              f"model.ghost_batch_size: must divide train.batch_size ({t.batch_size}), got {m.ghost_batch_size}")
    if m.norm == "whiten":
        check(m.whiten_group_size >= 1 and m.width % m.whiten_group_size == 0,
              f"model.whiten_group_size: must divide model.width ({m.width}), got {m.whiten_group_size}")
    check(m.lp_p in (1.0, 2.0, float("inf")), f"model.lp_p: allowed 1, 2, inf; got {m.lp_p}")
    check(m.renorm_rmax >= 1 and m.renorm_dmax >= 0,
          f"model.renorm_rmax, model.renorm_dmax: need rmax >= 1 and dmax >= 0, got {m.renorm_rmax}, {m.renorm_dmax}")

    registered(optim.OPTIMIZERS, o.name)
    check(o.lr > 0, f"optim.lr: must be > 0, got {o.lr}")
    check(0 <= o.momentum < 1, f"optim.momentum: must be in [0, 1), got {o.momentum}")
    check(0 <= o.b1 < 1 and 0 <= o.b2 < 1, f"optim.b1, optim.b2: must be in [0, 1), got {o.b1}, {o.b2}")
    check(o.schedule in SCHEDULES, f"optim.schedule: unknown {o.schedule!r}; allowed: {', '.join(SCHEDULES)}")
    check(o.warmup_steps >= 0, f"optim.warmup_steps: must be >= 0, got {o.warmup_steps}")
    check(0 <= o.final_lr_fraction <= 1, f"optim.final_lr_fraction: must be in [0, 1], got {o.final_lr_fraction}")
    check(all(0 < b < 1 for b in o.decay_boundaries) and list(o.decay_boundaries) == sorted(o.decay_boundaries),
          f"optim.decay_boundaries: must be increasing fractions in (0, 1), got {list(o.decay_boundaries)}")
    check(o.decay_factor > 0, f"optim.decay_factor: must be > 0, got {o.decay_factor}")
    check(o.weight_decay >= 0, f"optim.weight_decay: must be >= 0, got {o.weight_decay}")
    for key in ("clipnorm", "global_clipnorm", "clipvalue"):
        value = getattr(o, key)
        check(value is None or value > 0, f"optim.{key}: must be > 0 or null, got {value}")
    check(o.clipnorm is None or o.global_clipnorm is None, "optim.clipnorm, optim.global_clipnorm: set at most one (as in Keras)")

    check(t.batch_size >= 1, f"train.batch_size: must be >= 1, got {t.batch_size}")
    check((t.steps is None) != (t.epochs is None), "train.steps, train.epochs: give exactly one of them")
    check(t.steps is None or t.steps >= 1, f"train.steps: must be >= 1, got {t.steps}")
    check(t.epochs is None or t.epochs > 0, f"train.epochs: must be > 0, got {t.epochs}")
    check(t.log_every >= 1, f"train.log_every: must be >= 1, got {t.log_every}")
    check(t.eval_batch_size >= 1, f"train.eval_batch_size: must be >= 1, got {t.eval_batch_size}")
    check(t.eval_bn_stats in ("running", "population"), f"train.eval_bn_stats: unknown {t.eval_bn_stats!r}; allowed: running, population")
    if t.eval_bn_stats == "population" and m.norm in norms.NORMS and not recurrent:
        norm = norms.NORMS.get(m.norm)
        check(norm.population or not norm.absorbs_bias,
              f"train.eval_bn_stats: population statistics are defined for mean/variance norms "
              f"({', '.join(n for n in norms.NORMS.names() if norms.NORMS.get(n).population)}), not {m.norm!r}")
    check(t.checkpoint_every >= 0, f"train.checkpoint_every: must be >= 0, got {t.checkpoint_every}")
    if t.checkpoint_every > 0 and t.log_every >= 1:
        check(t.checkpoint_every % t.log_every == 0,
              f"train.checkpoint_every: must be a multiple of train.log_every ({t.log_every}), got {t.checkpoint_every}")

    problems.extend(_diagnostics_problems(cfg.diagnostics))
    if problems:
        raise ConfigError("\n".join(problems))


def _diagnostics_problems(dg: DiagnosticsConfig) -> list[str]:
    problems: list[str] = []

    def check(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    for name in ("activations", "landscape", "ics", "hessian"):
        section = getattr(dg, name)
        key = f"diagnostics.{name}"
        sch = section.schedule
        check(sch.every >= 0 and sch.log_spaced >= 0 and all(a >= 0 for a in sch.at),
              f"{key}.schedule: every, at and log_spaced must be >= 0, got {sch.every}, {list(sch.at)}, {sch.log_spaced}")
        if section.enabled:
            check(sch.every > 0 or sch.at or sch.log_spaced > 0, f"{key}.schedule: enabled but empty; set every, at or log_spaced")
        check(section.bn_mode in BN_MODES, f"{key}.bn_mode: unknown {section.bn_mode!r}; allowed: {', '.join(BN_MODES)}")
    a, l, h, s = dg.activations, dg.landscape, dg.hessian, dg.surface
    check(a.units >= 1, f"diagnostics.activations.units: must be >= 1, got {a.units}")
    check(a.batch_size >= 1, f"diagnostics.activations.batch_size: must be >= 1, got {a.batch_size}")
    check(0 < a.saturation < 1, f"diagnostics.activations.saturation: must be in (0, 1), got {a.saturation}")
    check(len(l.eta_multipliers) > 0 and all(m > 0 for m in l.eta_multipliers),
          f"diagnostics.landscape.eta_multipliers: must be positive numbers, got {list(l.eta_multipliers)}")
    check(h.batch_size >= 1, f"diagnostics.hessian.batch_size: must be >= 1, got {h.batch_size}")
    check(h.top_k >= 1, f"diagnostics.hessian.top_k: must be >= 1, got {h.top_k}")
    check(h.method in ("lanczos", "power"), f"diagnostics.hessian.method: unknown {h.method!r}; allowed: lanczos, power")
    check(h.method == "lanczos" or h.top_k == 1, "diagnostics.hessian.top_k: power iteration gives only the top eigenvalue; use method=lanczos for top_k > 1")
    check(h.iterations >= h.top_k, f"diagnostics.hessian.iterations: must be >= top_k ({h.top_k}), got {h.iterations}")
    check(h.trace_probes >= 0 and h.density_probes >= 0, "diagnostics.hessian.trace_probes, density_probes: must be >= 0")
    check(h.density_steps >= 2, f"diagnostics.hessian.density_steps: must be >= 2, got {h.density_steps}")
    check(s.dims in (1, 2), f"diagnostics.surface.dims: must be 1 or 2, got {s.dims}")
    check(s.points >= 2, f"diagnostics.surface.points: must be >= 2, got {s.points}")
    check(s.span > 0, f"diagnostics.surface.span: must be > 0, got {s.span}")
    check(s.batch_size >= 1, f"diagnostics.surface.batch_size: must be >= 1, got {s.batch_size}")
    check(s.bn_params in ("zero", "filter"), f"diagnostics.surface.bn_params: unknown {s.bn_params!r}; allowed: zero, filter")
    check(s.bn_stats in BN_MODES, f"diagnostics.surface.bn_stats: unknown {s.bn_stats!r}; allowed: {', '.join(BN_MODES)}")
    return problems


def schedule_steps(schedule: Schedule, total: int) -> set[int]:
    """The steps in [0, total] at which a schedule fires."""
    import numpy as np

    steps = {s for s in schedule.at if s <= total}
    if schedule.every > 0:
        steps.update(range(0, total + 1, schedule.every))
    if schedule.log_spaced > 0:
        steps.add(0)
        steps.update(int(round(s)) for s in np.geomspace(1, max(total, 1), schedule.log_spaced))
    return steps


def validate_against_data(cfg: Config, num_train: int, task: str = "classification") -> None:
    """Checks that need the dataset's size and task."""
    if task == "regression" and cfg.model.name not in ("dln", "mlp"):
        raise ConfigError(f"model.name: {cfg.data.name} is a regression task; allowed models: dln, mlp")
    if cfg.train.full_batch:
        return
    if cfg.train.batch_size > num_train:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} is larger than the training split "
            f"({num_train} examples of {cfg.data.name}); allowed: 1..{num_train}"
        )
