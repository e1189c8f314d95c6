"""The epoch permutation must be jax.random.permutation's, index for index: runs, checkpoints and
committed results depend on the data order."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnlab.train.permutation import permutation, stable_argsort


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 7200, 2**16, 2**16 + 5])
def test_the_same_indices_as_jax_random_permutation(n):
    for seed in range(3):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        np.testing.assert_array_equal(np.asarray(jax.jit(permutation, static_argnums=1)(key, n)), np.asarray(jax.random.permutation(key, n)))


def test_stable_argsort_orders_equal_keys_by_index():
    keys = jax.random.randint(jax.random.PRNGKey(0), (5000,), 0, 40).astype(jnp.uint32)  # many ties
    np.testing.assert_array_equal(np.asarray(jax.jit(stable_argsort)(keys)), np.argsort(np.asarray(keys), kind="stable"))
    extremes = jnp.asarray([2**32 - 1, 0, 2**32 - 1, 5, 0], jnp.uint32)
    np.testing.assert_array_equal(np.asarray(stable_argsort(extremes)), [1, 4, 3, 0, 2])


def test_vmapped_over_keys_as_in_vectorised_groups():
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    batched = jax.vmap(lambda k: permutation(k, 7200))(keys)
    for k, row in zip(keys, batched):
        np.testing.assert_array_equal(np.asarray(row), np.asarray(jax.random.permutation(k, 7200)))


def test_stable_argsort_refuses_more_keys_than_the_packing_holds():
    with pytest.raises(ValueError, match="at most 65536"):
        stable_argsort(jnp.zeros(2**16 + 1, jnp.uint32))
