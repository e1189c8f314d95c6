"""JAX's persistent compilation cache, shared by every process of a sweep (workers, Ray tasks)."""

from __future__ import annotations

import os


def enable_compilation_cache() -> None:
    """Reruns and other processes skip compiling (BNLAB_JAX_CACHE=dir, or 'off'; default ~/.cache/bnlab/jax)."""
    import jax

    path = os.environ.get("BNLAB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "bnlab", "jax"))
    if path.lower() in ("", "0", "off", "none"):
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
