"""The XLA options the programs that run a network are compiled with, per model (none off a CPU).

`BNLAB_PLAIN_XLA=1` in the environment turns off every speed choice of this suite at once: no
extra options here, and the plain `nnx.Conv` and `nnx.max_pool` in place of the CPU kernels of
`bnlab.nn.kernels` (the same results to float rounding, tested), for comparing or debugging.
An option the installed jaxlib does not know is left out, with one warning, rather than failing
every compilation.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax

from ..nn.kernels import plain
from ..nn.models import CONVOLUTIONAL


@functools.cache
def known(option: str, value: Any) -> bool:
    """Whether this jaxlib compiles with `option` set (a tiny program, once per process)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={option: value}).lower(1.0).compile()
        return True
    except Exception as err:  # jaxlib raises its own error types for an unknown or malformed option
        warnings.warn(f"XLA option {option}={value!r} is not known to jaxlib {jax.__version__}; compiling without it ({err})", stacklevel=2)
        return False


def compiler_options(model_name: str) -> dict[str, Any]:
    """XLA options for the programs that run a `model_name` net (none off a CPU). On a CPU:
    - 512-bit vectors for the loops XLA emits itself (elementwise fusions, reductions, the gather;
      the matmuls run in libraries): XLA's CPU backend prefers 256 bits, because some CPUs clock
      down on 512-bit instructions. On this project's AMD EPYC (AVX-512 at full speed) the training
      steps ran 1.03-1.05x faster with 512; a CPU without AVX-512 keeps to the vectors it has.
    - for conv nets, the matmuls in Eigen rather than YNNPACK (YNNPACK keeps the reductions): the
      convolutions' patch matmuls contract over 9 to 144 values, or over every pixel of the batch
      for the weight gradients, and Eigen ran the CNN's steps 1.09-1.11x faster; the MLP's
      (784-100-100-100-10) ran 0.97-1.00x as fast and an LSTM's 0.94-0.97x, so the other models
      keep YNNPACK (benchmarks/README.md)."""
    if jax.default_backend() != "cpu" or plain():
        return {}
    options: dict[str, Any] = {"xla_cpu_prefer_vector_width": 512}
    if model_name in CONVOLUTIONAL:
        options["xla_cpu_experimental_ynn_fusion_type"] = "LIBRARY_FUSION_TYPE_REDUCE"
    return {k: v for k, v in options.items() if known(k, v)}
