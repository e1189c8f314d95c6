"""Running sweeps: every run's config checked against the registries (`validate`), the plan
(`plan`), one run's host loop (`loop`), results on disk (`results`) and the executors (`execute`:
in this process or vectorised; `workers`: local processes; `ray_executor`)."""
