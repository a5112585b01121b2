"""Customer health score (issue 20): pure formulas over facts (`formulas`), defined in docs/metrics.md."""
