"""The claims about Batch Normalization, one module per claim, in report order.

bnlab reproduce [--scale quick|paper] [--only NAME ...] [--seeds 0,1,2] [--out results/claims]
bnlab report [results/claims]
"""

CLAIM_MODULES = (
    "sigmoid_depth",
    "ioffe_fig1",
    "learning_rate",
    "initialisation",
    "batch_size",
    "regularisation",
    "step_cost",
    "inference_stats",
    "rnn",
    "ics",
    "landscape",
    "curvature",
    "init_drift",
    "whitening",
)


def load_claims(names=None) -> list:
    """The Claim objects of the named modules (all, in report order, by default)."""
    import importlib

    from bnlab.errors import ConfigError

    names = list(names or CLAIM_MODULES)
    unknown = [n for n in names if n not in CLAIM_MODULES]
    if unknown:
        raise ConfigError(f"--only: no claim named {', '.join(unknown)}; the claims are {', '.join(CLAIM_MODULES)}")
    return [importlib.import_module(f"experiments.{n}").CLAIM for n in CLAIM_MODULES if n in names]
