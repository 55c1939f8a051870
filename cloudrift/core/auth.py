"""Strict choice of an authentication method from the options a caller gave.

Providers declare their auth methods as :class:`AuthMethod` values (the options each
one requires and the options it may also take). :func:`select_auth` picks the one
method that fits *exactly* the credential options given, and otherwise raises a
:class:`ConfigurationError` that says what is missing or what conflicts. An empty
string counts as a mistake, not as "absent": an unset env var exported as ``""``
must never silently select another path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cloudrift.core.exceptions import ConfigurationError


@dataclass(frozen=True)
class AuthMethod:
    """One way to authenticate: the options it needs and the ones it may also take."""

    name: str
    required: frozenset[str] = field(default_factory=frozenset)
    optional: frozenset[str] = field(default_factory=frozenset)

    @property
    def keys(self) -> frozenset[str]:
        """Every option this method uses."""
        return self.required | self.optional


def auth_method(
    name: str, required: Sequence[str] = (), optional: Sequence[str] = ()
) -> AuthMethod:
    """Shorthand constructor for :class:`AuthMethod`."""
    return AuthMethod(name, frozenset(required), frozenset(optional))


def select_auth(where: str, given: Mapping[str, object], methods: Sequence[AuthMethod]) -> str:
    """Return the name of the one method matching the non-None credential options in ``given``.

    ``given`` may hold any options; only those some method uses are considered.
    """
    relevant = frozenset().union(*(m.keys for m in methods))
    empty = sorted(k for k, v in given.items() if k in relevant and v is not None and v == "")
    if empty:
        raise ConfigurationError(
            f"{where}: option(s) {', '.join(empty)} are set to an empty string; "
            "give a value or leave them out"
        )
    present = frozenset(k for k, v in given.items() if k in relevant and v is not None)
    matches = [m for m in methods if m.required <= present <= m.keys]
    if len(matches) == 1:
        return matches[0].name
    if len(matches) > 1:
        # Prefer the most specific method (the one that consumes the most options).
        matches.sort(key=lambda m: len(m.required), reverse=True)
        if len(matches[0].required) > len(matches[1].required):
            return matches[0].name
        names = " / ".join(m.name for m in matches)
        raise ConfigurationError(f"{where}: the options given fit several auth methods ({names})")
    # No method fits: explain the nearest one.
    described = "; ".join(
        f"{m.name}: {', '.join(sorted(m.required)) or '(no credential options)'}" for m in methods
    )
    partial = [m for m in methods if present <= m.keys and not m.required <= present]
    if partial:
        best = min(partial, key=lambda m: len(m.required - present))
        missing = ", ".join(sorted(best.required - present))
        raise ConfigurationError(
            f"{where}: incomplete credentials for {best.name}: missing {missing}. "
            f"Auth methods: {described}"
        )
    raise ConfigurationError(
        f"{where}: conflicting credential options {', '.join(sorted(present))}; "
        f"choose exactly one auth method. Auth methods: {described}"
    )


__all__ = ["AuthMethod", "auth_method", "select_auth"]
