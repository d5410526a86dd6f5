"""Rules: compiled matchers, conditions, templates and the per-series window and absence state."""
