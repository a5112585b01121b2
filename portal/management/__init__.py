"""Portal management commands live in `commands/`."""
