"""The epoch permutation: `jax.random.permutation(key, n)`'s indices, computed faster on a CPU.

JAX shuffles by sorting the indices by fresh random 32-bit keys, a few rounds (jax/_src/random.py,
`_shuffle`). Each round's stable key-value sort is the slow part on XLA's CPU backend (0.9 ms for
7,200 indices, where a sort of one array of 7,200 takes 0.17 ms): it was about 9% of the MLP's
training step (benchmarks/step_profile.py). Here each round is two single-array sorts instead,
which give the same stable order (tested): every key's rank is the first position of its value
among the sorted keys, and (rank, index) packed into one uint32 sorts to the stable order. The
packing needs n * n <= 2**32, so larger sets use `jax.random.permutation` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_MAX_PACKED = 2**16  # n <= 2**16 keeps rank * n + index below 2**32


def stable_argsort(keys: jax.Array) -> jax.Array:
    """The indices that sort uint32 `keys`, equal keys in index order (lax.sort_key_val's order)."""
    n = keys.shape[0]
    if n > _MAX_PACKED:
        raise ValueError(f"stable_argsort: {n} keys; at most {_MAX_PACKED}")
    first = jnp.searchsorted(jax.lax.sort(keys), keys, side="left").astype(jnp.uint32)
    packed = first * jnp.uint32(n) + jnp.arange(n, dtype=jnp.uint32)
    return (jax.lax.sort(packed) % jnp.uint32(n)).astype(jnp.int32)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """The same indices as `jax.random.permutation(key, n)`."""
    if n > _MAX_PACKED:
        return jax.random.permutation(key, n)
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(2**32 - 1))  # JAX's rule (exponent 3)
    x = jnp.arange(n, dtype=jnp.int32)
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        x = x[stable_argsort(jax.random.bits(subkey, (n,), jnp.uint32))]
    return x
