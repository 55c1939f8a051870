"""A controllable clock shared by tests of TTLs and token refresh."""

from __future__ import annotations


class FakeClock:
    """Seconds that move only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (the conformance suites' ``advance`` fixture)."""
        self.now += seconds
