"""bnlab: test the claims about Batch Normalization with real JAX/Flax training runs.

    import bnlab
    results = bnlab.run("configs/quickstart.yaml", out="results/quickstart")
    runs, metrics = bnlab.load_results("results/quickstart")

Importing the package is cheap on purpose (no JAX, no TensorFlow) so that `bnlab --help`
answers at once; the heavy modules are imported by the functions and commands that need them.
"""

from .api import Results, load_config, load_results, run
from .errors import ConfigError

__version__ = "0.1.0"
__all__ = ["ConfigError", "Results", "load_config", "load_results", "run"]
