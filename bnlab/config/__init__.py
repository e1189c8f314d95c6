"""Configs: the typed schema (`schema`), loading with overrides (`load`) and sweep expansion
(`sweep`). Checking a config against the registries comes later, in `bnlab.runner.validate`: this
stage knows no registry."""
