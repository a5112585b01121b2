"""Billing management commands live in `commands/`."""
