"""Shared conformance suites: one class per category, run against every provider.

The pattern (as in Go CDK's drivertest):

* ``tests/conformance/<category>.py`` defines ``class <Category>Conformance(Conformance)``
  whose tests take a ``backend`` fixture and check the contract's sentences.
* Each provider's test module subclasses it, provides ``backend`` against a real local
  stand-in, and lists in ``unsupported`` the capabilities the provider lacks.
* A test of a capability calls ``self.lacks("capability")``: when the provider declares
  it unsupported, the test instead checks that using it raises
  :class:`~cloudrift.core.exceptions.FeatureNotSupportedError` — a missing capability
  is part of the contract, never a silent skip.
"""

from __future__ import annotations

from typing import ClassVar


class Conformance:
    """Base of every category suite."""

    #: Capabilities this provider does not have; see each suite's CAPABILITIES.
    unsupported: ClassVar[frozenset[str]] = frozenset()
    #: Every capability name the suite knows (a typo in ``unsupported`` is an error).
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()

    def lacks(self, capability: str) -> bool:
        """True when the provider under test declares ``capability`` unsupported."""
        assert capability in self.CAPABILITIES, f"unknown capability {capability!r}"
        return capability in self.unsupported

    def test_declared_capabilities_are_known(self) -> None:
        """The provider declares only capabilities the suite knows about."""
        assert self.unsupported <= self.CAPABILITIES, self.unsupported - self.CAPABILITIES
