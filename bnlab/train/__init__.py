"""Training: the state (`state`), a network as pure functions (`model_fns`), optimisers (`optim`),
the compiled program (`program`), vectorised groups (`vectorized`), evaluation with population
statistics (`evaluation`) and checkpoints (`checkpoint`)."""
