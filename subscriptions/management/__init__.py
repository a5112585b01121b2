"""Subscriptions management commands live in `commands/`."""
