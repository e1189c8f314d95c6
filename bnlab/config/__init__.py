"""Configs: the typed schema (`schema`), loading with overrides (`load`), sweep expansion
(`sweep`) and semantic validation against the registries (`validate`)."""
