"""Figures from saved results only: the runs as figures see them (`runs`), training figures
(`figures`), diagnostic figures (`diagnostic_figures`) and `plot_all` (`plot`)."""
