"""Semantic validation: ranges and registry names, checked for every run before any work starts.

Each problem names its key and what is allowed, and all problems are reported at once. The checks
that belong to one component (a norm's group size, a model's options) are that component's own,
declared with it (`check=` in its registration); here they are collected for the components a
config selects. This module sits in the runner, after every registry it reads.
"""

from __future__ import annotations

import math

from ..config.load import flatten, to_dict
from ..config.schema import BN_MODES, Config, DiagnosticsConfig
from ..data.sources import parse_name
from ..errors import ConfigError
from ..nn.activations import ACTIVATIONS
from ..nn.initializers import INITIALIZERS
from ..nn.models import MODELS, RECURRENT, components
from ..nn.norms import NORMS
from ..nn.recurrent import RNN_NORMS
from ..train.optim import OPTIMIZERS

STANDARDIZE = ("none", "feature", "channel")
SCHEDULES = ("constant", "cosine", "linear", "step")


def validate(cfg: Config) -> None:
    """Raise ConfigError listing every problem found (not just the first)."""
    problems: list[str] = []

    def check(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    def registered(registry, name: str) -> None:
        try:
            registry.get(name)
        except ConfigError as err:
            problems.append(str(err))

    for key, value in flatten(to_dict(cfg)).items():
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        check(not bad, f"{key}: must be a finite number, got {bad[0] if bad else ''}")
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    try:
        parse_name(d.name)
    except ConfigError as err:
        problems.append(str(err))
    check(0 <= d.val_fraction < 1, f"data.val_fraction: must be in [0, 1), got {d.val_fraction}")
    check(0 < d.test_fraction < 1, f"data.test_fraction: must be in (0, 1), got {d.test_fraction}")
    check(d.val_fraction + d.test_fraction < 1, "data.val_fraction + data.test_fraction: must be < 1")
    check(d.subset is None or d.subset > 0, f"data.subset: must be a positive count or null, got {d.subset}")
    check(d.standardize in STANDARDIZE, f"data.standardize: unknown {d.standardize!r}; allowed: {', '.join(STANDARDIZE)}")
    check(d.synthetic_size > 0, f"data.synthetic_size: must be > 0, got {d.synthetic_size}")
    check(
        len(d.synthetic_shape) == 3 and all(s > 0 for s in d.synthetic_shape),
        f"data.synthetic_shape: must be three positive sizes [H, W, C], got {list(d.synthetic_shape)}",
    )
    check(d.synthetic_classes >= 2, f"data.synthetic_classes: must be >= 2, got {d.synthetic_classes}")
    check(d.regression_outputs >= 1, f"data.regression_outputs: must be >= 1, got {d.regression_outputs}")
    check(d.evidence_noise >= 0, f"data.evidence_noise: must be >= 0, got {d.evidence_noise}")
    check(all(n >= 1 for n in d.eval_lengths), f"data.eval_lengths: must be positive sequence lengths, got {list(d.eval_lengths)}")
    check(
        not d.eval_lengths or (d.name == "evidence" and m.name in RECURRENT),
        "data.eval_lengths: sequences of other lengths come from the evidence dataset and are read by recurrent models (rnn, lstm); "
        f"got data.name {d.name!r} and model.name {m.name!r}",
    )
    check(d.mnist1d_samples >= 10, f"data.mnist1d_samples: must be >= 10 (one per class), got {d.mnist1d_samples}")
    check(
        d.name != "linear_regression" or d.standardize == "none",
        "data.standardize: linear_regression's target is A x of the very x the model sees (Santurkar et al. App. A.1); "
        f"standardising x would make it affine, out of a bias-free network's reach: set data.standardize: none (got {d.standardize!r})",
    )

    registered(MODELS, m.name)
    recurrent = m.name in RECURRENT
    registered(RNN_NORMS if recurrent else NORMS, m.norm)
    if recurrent:
        check(not cfg.diagnostics.ics.enabled, "diagnostics.ics: defined for feed-forward layers (mlp, cnn, dln), not recurrent models")
    registered(ACTIVATIONS, m.activation)
    mults = cfg.diagnostics.landscape.eta_multipliers
    check(
        m.name != "dln" or not cfg.diagnostics.landscape.enabled or (min(mults, default=1) <= 0.01 and max(mults, default=0) >= 30),
        "diagnostics.landscape.eta_multipliers: for the deep linear network Santurkar et al. (App. A.2.2) probe step sizes "
        f"from 1/100 to 30 times the learning rate, e.g. [0.01, 0.1, 1, 10, 30]; got {list(mults)}",
    )
    check(
        m.name != "dln" or m.activation == "linear",
        f"model.activation: the dln model has no nonlinearity, so it must say so: set model.activation: linear (got {m.activation!r})",
    )
    registered(INITIALIZERS, m.init)
    check(m.depth >= 1, f"model.depth: must be >= 1, got {m.depth}")
    check(m.width >= 1, f"model.width: must be >= 1, got {m.width}")
    check(m.convs_per_stage >= 1, f"model.convs_per_stage: must be >= 1, got {m.convs_per_stage}")
    check(m.init_std > 0, f"model.init_std: must be > 0, got {m.init_std}")
    check(m.recurrent_gain > 0, f"model.recurrent_gain: must be > 0, got {m.recurrent_gain}")
    check(m.init_scale > 0, f"model.init_scale: must be > 0, got {m.init_scale}")
    check(0 <= m.dropout < 1, f"model.dropout: must be in [0, 1), got {m.dropout}")
    check(0 <= m.bn_momentum < 1, f"model.bn_momentum: must be in [0, 1) (Flax convention, 0.99 default), got {m.bn_momentum}")
    check(m.norm_epsilon > 0, f"model.norm_epsilon: must be > 0, got {m.norm_epsilon}")
    for registry, name in components(m) + [(OPTIMIZERS, o.name)]:  # each component's own checks (its Declaration)
        declared = registry.declaration(name) if name in registry else None
        if declared is not None and declared.check is not None:
            problems.extend(declared.check(cfg))

    registered(OPTIMIZERS, o.name)
    check(o.lr > 0, f"optim.lr: must be > 0, got {o.lr}")
    check(o.lr_reference_batch is None or o.lr_reference_batch >= 1, f"optim.lr_reference_batch: must be >= 1 or null, got {o.lr_reference_batch}")
    check(0 <= o.momentum < 1, f"optim.momentum: must be in [0, 1), got {o.momentum}")
    check(0 <= o.b1 < 1 and 0 <= o.b2 < 1, f"optim.b1, optim.b2: must be in [0, 1), got {o.b1}, {o.b2}")
    check(o.schedule in SCHEDULES, f"optim.schedule: unknown {o.schedule!r}; allowed: {', '.join(SCHEDULES)}")
    check(o.warmup_steps >= 0, f"optim.warmup_steps: must be >= 0, got {o.warmup_steps}")
    check(0 <= o.final_lr_fraction <= 1, f"optim.final_lr_fraction: must be in [0, 1], got {o.final_lr_fraction}")
    check(
        all(0 < b < 1 for b in o.decay_boundaries) and list(o.decay_boundaries) == sorted(o.decay_boundaries),
        f"optim.decay_boundaries: must be increasing fractions in (0, 1), got {list(o.decay_boundaries)}",
    )
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
    allowed = ("running", "population", "population_biased", "both", "all")
    check(t.eval_bn_stats in allowed, f"train.eval_bn_stats: unknown {t.eval_bn_stats!r}; allowed: {', '.join(allowed)}")
    if t.eval_bn_stats in ("population", "population_biased") and m.norm in NORMS and not recurrent:
        norm = NORMS.get(m.norm)
        check(
            norm.population or not norm.absorbs_bias,
            f"train.eval_bn_stats: population statistics are defined for mean/variance norms "
            f"({', '.join(n for n in NORMS.names() if NORMS.get(n).population)}), not {m.norm!r}",
        )
    check(t.checkpoint_every >= 0, f"train.checkpoint_every: must be >= 0, got {t.checkpoint_every}")
    if t.checkpoint_every > 0 and t.log_every >= 1:
        check(
            t.checkpoint_every % t.log_every == 0,
            f"train.checkpoint_every: must be a multiple of train.log_every ({t.log_every}), got {t.checkpoint_every}",
        )

    problems.extend(_diagnostics_problems(cfg.diagnostics))
    if cfg.diagnostics.activations.enabled and cfg.diagnostics.activations.point == "pre_norm" and recurrent:
        problems.append(f"diagnostics.activations.point: pre_norm is measured for feedforward models, not {m.name!r}")
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
        check(
            sch.every >= 0 and sch.log_spaced >= 0 and all(a >= 0 for a in sch.at),
            f"{key}.schedule: every, at and log_spaced must be >= 0, got {sch.every}, {list(sch.at)}, {sch.log_spaced}",
        )
        if section.enabled:
            check(sch.every > 0 or sch.at or sch.log_spaced > 0, f"{key}.schedule: enabled but empty; set every, at or log_spaced")
        check(section.bn_mode in BN_MODES, f"{key}.bn_mode: unknown {section.bn_mode!r}; allowed: {', '.join(BN_MODES)}")
    a, land, h, s = dg.activations, dg.landscape, dg.hessian, dg.surface
    check(a.units >= 1, f"diagnostics.activations.units: must be >= 1, got {a.units}")
    check(a.batch_size >= 1, f"diagnostics.activations.batch_size: must be >= 1, got {a.batch_size}")
    check(0 < a.saturation < 1, f"diagnostics.activations.saturation: must be in (0, 1), got {a.saturation}")
    points = ("nonlinearity_input", "pre_norm")
    check(a.point in points, f"diagnostics.activations.point: unknown {a.point!r}; allowed: {', '.join(points)}")
    check(
        len(land.eta_multipliers) > 0 and all(m > 0 for m in land.eta_multipliers),
        f"diagnostics.landscape.eta_multipliers: must be positive numbers, got {list(land.eta_multipliers)}",
    )
    check(h.batch_size >= 1, f"diagnostics.hessian.batch_size: must be >= 1, got {h.batch_size}")
    check(h.top_k >= 1, f"diagnostics.hessian.top_k: must be >= 1, got {h.top_k}")
    check(h.method in ("lanczos", "power"), f"diagnostics.hessian.method: unknown {h.method!r}; allowed: lanczos, power")
    check(
        h.method == "lanczos" or h.top_k == 1,
        "diagnostics.hessian.top_k: power iteration gives only the top eigenvalue; use method=lanczos for top_k > 1",
    )
    check(h.iterations >= h.top_k, f"diagnostics.hessian.iterations: must be >= top_k ({h.top_k}), got {h.iterations}")
    check(h.trace_probes >= 0 and h.density_probes >= 0, "diagnostics.hessian.trace_probes, density_probes: must be >= 0")
    check(h.density_steps >= 2, f"diagnostics.hessian.density_steps: must be >= 2, got {h.density_steps}")
    check(s.dims in (1, 2), f"diagnostics.surface.dims: must be 1 or 2, got {s.dims}")
    check(s.points >= 2, f"diagnostics.surface.points: must be >= 2, got {s.points}")
    check(s.span > 0, f"diagnostics.surface.span: must be > 0, got {s.span}")
    check(s.batch_size >= 1, f"diagnostics.surface.batch_size: must be >= 1, got {s.batch_size}")
    check(s.bn_params in ("zero", "copy"), f"diagnostics.surface.bn_params: unknown {s.bn_params!r}; allowed: zero, copy")
    check(s.bn_stats in BN_MODES, f"diagnostics.surface.bn_stats: unknown {s.bn_stats!r}; allowed: {', '.join(BN_MODES)}")
    return problems


def validate_against_data(cfg: Config, num_train: int, task: str = "classification") -> None:
    """Checks that need the dataset's size and task."""
    if task == "regression" and cfg.model.name not in ("dln", "mlp"):
        raise ConfigError(f"model.name: {cfg.data.name} is a regression task; allowed models: dln, mlp")
    if cfg.train.full_batch:
        m = cfg.model
        if m.norm == "ghost_batch" and num_train % m.ghost_batch_size:
            raise ConfigError(
                f"model.ghost_batch_size: with train.full_batch every batch is the whole training split ({num_train} examples), "
                f"which {m.ghost_batch_size} does not divide; allowed: a divisor of {num_train}"
            )
        return
    if cfg.train.batch_size > num_train:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} is larger than the training split "
            f"({num_train} examples of {cfg.data.name}); allowed: 1..{num_train}"
        )
