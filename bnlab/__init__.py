"""bnlab: test the claims about Batch Normalization with real JAX/Flax training runs.

Importing the package is cheap on purpose (no JAX, no TensorFlow) so that `bnlab --help`
answers at once; the heavy modules are imported by the commands that need them.
"""

__version__ = "0.1.0"
