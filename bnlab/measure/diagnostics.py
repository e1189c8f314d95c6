"""Scheduled measurements of how training behaves (registry), written into the run's metrics.

Each diagnostic is built from the run's config and its TrainProgram, fires at the steps of its
schedule, and returns flat metrics named `<diagnostic>/<quantity>`, including the BN mode it
evaluated the network in (`<diagnostic>/bn_mode`). Measurements are pure functions of the
training state: they never change parameters, optimiser state or running statistics (tested).
They run between compiled training chunks, which end exactly at the scheduled steps; a
measurement at step s sees the weights after s updates and, where it needs a training batch,
the very batch that step s trains on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config.schema import Config, Schedule
from ..registry import Registry
from ..train import optim
from ..train.program import TrainProgram
from ..train.state import TrainState
from .hessian import flat_hvp, gradient_share, hutchinson_trace, slq, top_eigen_lanczos, top_eigen_power


def schedule_steps(schedule: Schedule, total: int) -> set[int]:
    """The steps in [0, total] at which a schedule fires."""
    steps = {s for s in schedule.at if s <= total}
    if schedule.every > 0:
        steps.update(range(0, total + 1, schedule.every))
    if schedule.log_spaced > 0:
        steps.add(0)
        steps.update(int(round(s)) for s in np.geomspace(1, max(total, 1), schedule.log_spaced))
    return steps


class Diagnostic(Protocol):
    def steps(self, total: int) -> set[int]: ...

    def measure(self, state: TrainState) -> dict[str, Any]: ...


DIAGNOSTICS: Registry[Callable[[Config, TrainProgram], Diagnostic]] = Registry("diagnostic", "diagnostics")


class _Scheduled:
    """Shared plumbing: a jitted `_measure(state)` returning named arrays, fired on `cfg.schedule`.
    Subclasses set `name`, `self.cfg` and `self._measure`."""

    name: str

    def steps(self, total: int) -> set[int]:
        return schedule_steps(self.cfg.schedule, total)

    def measure(self, state: TrainState) -> dict[str, Any]:
        return {**_to_host(self._measure(state)), f"{self.name}/bn_mode": self.cfg.bn_mode}


def layer_of(path: tuple[Any, ...], depth: int) -> int:
    """Hidden layer i -> i, the classifier head -> depth (the layer above all hidden ones)."""
    keys = [getattr(p, "key", p) for p in path]
    return int(keys[1]) if keys[0] == "hidden" else depth


def _to_host(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: (np.asarray(v).tolist() if np.ndim(v) else float(v)) for k, v in jax.device_get(tree).items()}


def _squash(activation: str) -> Callable[[jax.Array], jax.Array] | None:
    """Output of a bounded activation mapped to (-1, 1), for counting saturated units."""
    return {"sigmoid": lambda h: jnp.tanh(h / 2), "tanh": jnp.tanh}.get(activation)


@DIAGNOSTICS.register("activations", doc="percentiles of the nonlinearity's input over training (Ioffe & Szegedy 2015, Fig. 1b,c)")
class Activations(_Scheduled):
    """Ioffe & Szegedy 2015, Fig. 1(b,c): the {15, 50, 85}th percentiles of the input to the
    nonlinearity (γx̂+β for BN nets) of fixed units, over a fixed evaluation batch; per-layer mean
    and std of pre-activations; the fraction of saturated sigmoid/tanh units. `point: pre_norm`
    measures the norm's input W x instead (a BN net's own statistics hold its output still)."""

    name = "activations"

    def __init__(self, cfg: Config, program: TrainProgram):
        self.cfg = cfg.diagnostics.activations
        ds = program.dataset
        x = ds.x_val if len(ds.y_val) else ds.x_train
        self.x = jnp.asarray(x[: self.cfg.batch_size])
        squash = _squash(cfg.model.activation)
        units, sat, train = self.cfg.units, self.cfg.saturation, self.cfg.bn_mode == "batch"
        capture = "linear" if self.cfg.point == "pre_norm" else True

        def measure(state: TrainState):
            pres = program.model.apply(state.params, state.batch_stats, self.x, train=train, capture=capture).pre_activations
            out = {}
            for i, pre in enumerate(pres):
                flat = pre.reshape(-1, pre.shape[-1])  # (examples [x positions], units)
                q = jnp.percentile(flat[:, :units], jnp.array([15.0, 50.0, 85.0]), axis=0)
                for u in range(min(units, flat.shape[1])):
                    for j, p in enumerate((15, 50, 85)):
                        out[f"activations/hidden.{i}/u{u}/p{p}"] = q[j, u]
                out[f"activations/hidden.{i}/mean"] = jnp.mean(pre)
                out[f"activations/hidden.{i}/std"] = jnp.std(pre)
                if squash is not None:
                    out[f"activations/hidden.{i}/saturated"] = jnp.mean(jnp.abs(squash(pre)) > sat)
            return out

        self._measure = program.model.jit(measure)


@DIAGNOSTICS.register("landscape", doc="loss and gradient change along the gradient, effective β-smoothness (Santurkar et al. 2018, Fig. 4)")
class Landscape(_Scheduled):
    """Santurkar et al. 2018, Fig. 4: along the gradient g = ∇L(w; B) of this step's batch B, for
    η in lr × eta_multipliers (lr: the scheduled learning rate of this step, recorded as
    `landscape/lr`): loss range min/max of L(w − ηg; B), gradient predictiveness min/max of
    ‖g − ∇L(w − ηg; B)‖₂, and effective β-smoothness max_η ‖g − ∇L(w − ηg; B)‖₂ / (η‖g‖₂).
    All step sizes are evaluated in one vmap."""

    name = "landscape"

    def __init__(self, cfg: Config, program: TrainProgram):
        self.cfg = cfg.diagnostics.landscape
        multipliers = jnp.asarray(self.cfg.eta_multipliers, jnp.float32)
        lr_at = optim.schedule(cfg.optim, program.total_steps, program.batch_size)
        mode = self.cfg.bn_mode

        def measure(state: TrainState):
            x, y = program.batch_at(state)
            lr = lr_at(state.step)  # the learning rate the update of this step uses
            etas = multipliers * lr

            def loss(p):
                return program.model.loss(p, state.batch_stats, x, y, bn_mode=mode)[0]

            value_and_grad = jax.value_and_grad(loss)
            loss0, g = value_and_grad(state.params)
            gnorm = optax.global_norm(g)

            def along(eta):
                loss_eta, g_eta = value_and_grad(jax.tree.map(lambda w, d: w - eta * d, state.params, g))
                return loss_eta, optax.global_norm(jax.tree.map(jnp.subtract, g, g_eta))

            losses, diffs = jax.vmap(along)(etas)
            return {
                "landscape/loss": loss0,
                "landscape/loss_min": jnp.min(losses),
                "landscape/loss_max": jnp.max(losses),
                "landscape/grad_pred_min": jnp.min(diffs),
                "landscape/grad_pred_max": jnp.max(diffs),
                "landscape/beta_smoothness": jnp.max(diffs / (etas * gnorm)),
                "landscape/grad_norm": gnorm,
                "landscape/lr": lr,
            }

        self._measure = program.model.jit(measure)


@DIAGNOSTICS.register("ics", doc="internal covariate shift ‖G − G′‖ and cos(G, G′) per layer (Santurkar et al. 2018, Def. 2.1)")
class InternalCovariateShift(_Scheduled):
    """Santurkar et al. 2018, Def. 2.1: for each layer i above the first, G = ∇_{W_i} L(W_1..W_k; B)
    and G' = ∇_{W_i} L(W'_1..W'_{i−1}, W_i..W_k; B), with W' the weights after this step's actual
    update (the optimiser's, on the training loss with dropout); logs ‖G − G'‖₂ and cos(G, G').
    "Layer" means all parameters of a hidden layer (kernel, bias, γ, β); W_i is its kernel.
    The gradients for all layers come from one vmap over update masks."""

    name = "ics"

    def __init__(self, cfg: Config, program: TrainProgram):
        self.cfg = cfg.diagnostics.ics
        depth = program.model.num_hidden
        layers = list(range(1, depth + 1))  # hidden.1 .. hidden.{depth-1}, then the head
        self.names = [f"hidden.{i}" if i < depth else "head" for i in layers]
        mode = self.cfg.bn_mode

        def kernel(tree, i):
            return tree["hidden"][i]["layer"]["kernel"] if i < depth else tree["head"]["kernel"]

        def measure(state: TrainState):
            x, y = program.batch_at(state)
            train_grads = jax.grad(
                lambda p: program.model.loss(p, state.batch_stats, x, y, bn_mode="batch", rng=program.step_rng(state, state.step))[0]
            )(state.params)
            updates, _ = program.tx.update(train_grads, state.opt_state, state.params)

            def grad_at(p):
                return jax.grad(lambda q: program.model.loss(q, state.batch_stats, x, y, bn_mode=mode)[0])(p)

            G = grad_at(state.params)
            masks = jnp.asarray(layers, jnp.int32)

            def shifted(i):
                moved = jax.tree_util.tree_map_with_path(
                    lambda path, w, u: w + jnp.where(layer_of(path, depth) < i, 1.0, 0.0) * u, state.params, updates
                )
                return grad_at(moved)

            G_shift = jax.vmap(shifted)(masks)
            out = {}
            for slot, (i, name) in enumerate(zip(layers, self.names)):
                g, g2 = kernel(G, i).ravel(), kernel(G_shift, i)[slot].ravel()
                out[f"ics/{name}/l2"] = jnp.linalg.norm(g - g2)
                out[f"ics/{name}/cos"] = jnp.dot(g, g2) / (jnp.linalg.norm(g) * jnp.linalg.norm(g2) + 1e-30)
            return out

        self._measure = program.model.jit(measure)


@DIAGNOSTICS.register("hessian", doc="top Hessian eigenvalues, trace, spectral density, gradient share (Ghorbani et al. 2019)")
class Hessian(_Scheduled):
    """Curvature of the loss on a fixed training batch (see bnlab.measure.hessian): top-k eigenvalues,
    Hutchinson trace, SLQ spectral density (nodes and weights) and the gradient's share in the top-k
    eigenspace (Ghorbani et al. 2019). Probe vectors use a fixed key, so measurements over training
    differ only because the weights do."""

    name = "hessian"

    def __init__(self, cfg: Config, program: TrainProgram):
        self.cfg = c = cfg.diagnostics.hessian
        x = jnp.asarray(program.dataset.x_train[: c.batch_size])
        y = jnp.asarray(program.dataset.y_train[: c.batch_size])
        key = jax.random.PRNGKey(c.seed)

        def measure(state: TrainState):
            def loss(p):
                return program.model.loss(p, state.batch_stats, x, y, bn_mode=c.bn_mode)[0]

            matvec, x0, unravel = flat_hvp(loss, state.params)
            n = x0.shape[0]
            k_eig, k_tr, k_slq = jax.random.split(key, 3)
            if c.method == "lanczos":
                values, vectors = top_eigen_lanczos(matvec, n, c.top_k, min(c.iterations, n), k_eig)
            else:
                values, vectors = top_eigen_power(matvec, n, c.iterations, k_eig)
            g = jax.grad(lambda v: loss(unravel(v)))(x0)
            out = {f"hessian/eig_{j + 1}": values[j] for j in range(values.shape[0])}
            out[f"hessian/grad_share_top{values.shape[0]}"] = gradient_share(g, vectors)
            if c.trace_probes:
                out["hessian/trace"] = hutchinson_trace(matvec, n, c.trace_probes, k_tr)
            if c.density_probes:
                out["hessian/density_nodes"], out["hessian/density_weights"] = slq(matvec, n, c.density_probes, min(c.density_steps, n), k_slq)
            return out

        self._measure = program.model.jit(measure)


def enabled(cfg: Config, program: TrainProgram) -> list[Diagnostic]:
    """The scheduled diagnostics a config switches on (the loss surface runs once, after training)."""
    return [DIAGNOSTICS.get(name)(cfg, program) for name in DIAGNOSTICS.names() if getattr(cfg.diagnostics, name).enabled]
