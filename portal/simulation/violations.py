"""What an invariant reports when it does not hold: the invariant, the invoice or subscription, and the facts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    facts: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.subject}: {self.facts}"
