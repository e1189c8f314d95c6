"""Hessian curvature of a loss on a fixed batch, matrix-free.

All routines act on a `matvec(v) -> H v` over flat parameter vectors, so they are checked against
a dense matrix in the tests (`jnp.linalg.eigh` of the full Hessian of a tiny model).

- Hessian-vector products by forward-over-reverse differentiation: `jvp` of `grad`
  (Pearlmutter 1994), never forming H.
- Top eigenvalues by Lanczos with full reorthogonalisation (as in Ghorbani et al. 2019 /
  google/spectral-density), or by power iteration (PyHessian's choice; it finds the eigenvalue of
  largest magnitude).
- Trace by Hutchinson's estimator with Rademacher probes: tr(H) = E[vᵀHv].
- Spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019, Sec. 3; Lin et al.
  2016): each probe v gives nodes θ_j (the Ritz values) and weights τ_j = (e₁ᵀ u_j)², so that
  Σ_j τ_j f(θ_j) ≈ v̂ᵀ f(H) v̂; averaging over probes estimates (1/n) tr f(H), the density's moments.
- The share of the gradient in the top-k eigenspace, ‖P_k g‖² / ‖g‖² (Ghorbani et al. 2019, Sec. 4).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

MatVec = Callable[[jax.Array], jax.Array]


def flat_hvp(loss: Callable, params) -> tuple[MatVec, jax.Array, Callable]:
    """(v -> H v, flat params, unravel) for `loss(params)` at `params`."""
    x0, unravel = ravel_pytree(params)
    grad = jax.grad(lambda x: loss(unravel(x)))

    def matvec(v: jax.Array) -> jax.Array:
        return jax.jvp(grad, (x0,), (v,))[1]

    return matvec, x0, unravel


def lanczos(matvec: MatVec, v0: jax.Array, steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`steps` Lanczos iterations from v0 with full reorthogonalisation.

    Returns (alpha, beta, Q): T = tridiag(beta, alpha, beta) with alpha (steps,), beta (steps-1,),
    and the Lanczos vectors Q (steps, n). On breakdown (an invariant subspace is found) the
    remaining vectors are zero, which adds zero-weight nodes only.
    """
    n = v0.shape[0]
    q0 = v0 / jnp.linalg.norm(v0)
    Q = jnp.zeros((steps, n), v0.dtype).at[0].set(q0)

    def body(j, carry):
        Q, alpha, beta = carry
        q = Q[j]
        w = matvec(q)
        a = jnp.dot(w, q)
        w = w - a * q - jnp.where(j > 0, beta[j - 1], 0.0) * Q[jnp.maximum(j - 1, 0)]
        for _ in range(2):  # twice is enough (Parlett's "twice is enough")
            w = w - Q.T @ (Q @ w)
        b = jnp.linalg.norm(w)
        ok = b > 1e-6 * jnp.maximum(jnp.abs(a), 1.0)
        nxt = jnp.where(ok, w / jnp.where(ok, b, 1.0), 0.0)
        Q = jax.lax.cond(j + 1 < steps, lambda: Q.at[j + 1].set(nxt), lambda: Q)
        return Q, alpha.at[j].set(a), beta.at[j].set(jnp.where(ok, b, 0.0))

    Q, alpha, beta = jax.lax.fori_loop(0, steps, body, (Q, jnp.zeros(steps, v0.dtype), jnp.zeros(steps, v0.dtype)))
    return alpha, beta[:-1], Q


def tridiagonal(alpha: jax.Array, beta: jax.Array) -> jax.Array:
    return jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)


def top_eigen_lanczos(matvec: MatVec, n: int, k: int, steps: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The k largest (algebraic) eigenvalues, descending, and their Ritz vectors (k, n)."""
    alpha, beta, Q = lanczos(matvec, jax.random.normal(key, (n,)), steps)
    theta, U = jnp.linalg.eigh(tridiagonal(alpha, beta))
    order = jnp.argsort(-theta)[:k]
    vectors = (Q.T @ U[:, order]).T
    return theta[order], vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)


def top_eigen_power(matvec: MatVec, n: int, iterations: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The eigenvalue of largest magnitude by power iteration, as (1,) and (1, n) arrays."""

    def body(_, v):
        w = matvec(v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, iterations, body, jax.random.normal(key, (n,)) / jnp.sqrt(n))
    return jnp.dot(v, matvec(v))[None], v[None]


def hutchinson_trace(matvec: MatVec, n: int, probes: int, key: jax.Array) -> jax.Array:
    """Mean of vᵀHv over Rademacher probes v (entries ±1)."""
    vs = jax.random.rademacher(key, (probes, n), dtype=jnp.float32)
    return jnp.mean(jax.lax.map(lambda v: jnp.dot(v, matvec(v)), vs))


def slq(matvec: MatVec, n: int, probes: int, steps: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stochastic Lanczos quadrature: nodes and weights (probes, steps); each probe's weights sum to 1."""

    def one(k):
        alpha, beta, _ = lanczos(matvec, jax.random.normal(k, (n,)), steps)
        theta, U = jnp.linalg.eigh(tridiagonal(alpha, beta))
        return theta, U[0] ** 2

    return jax.lax.map(one, jax.random.split(key, probes))


def density(nodes, weights, grid, sigma: float):
    """Gaussian-smoothed spectral density on `grid` from SLQ nodes/weights (averaged over probes)."""
    nodes, weights, grid = (jnp.asarray(a) for a in (nodes, weights, grid))
    kernel = jnp.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))
    return jnp.mean(jnp.sum(kernel * weights[None], axis=-1), axis=-1)


def gradient_share(g: jax.Array, vectors: jax.Array) -> jax.Array:
    """‖P g‖² / ‖g‖² for P the projection onto the span of the (orthonormal) rows of `vectors`."""
    return jnp.sum((vectors @ g) ** 2) / jnp.sum(g**2)
