"""Revenue metrics (issue 20): pure formulas in `revenue`; the services that feed them live in billing.services."""
