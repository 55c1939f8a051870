"""Explicit provider dispatch shared by every category's factory.

A category declares a table ``{"s3": ProviderSpec(...), ...}``; :func:`build_provider`
looks the name up (an unknown one lists the valid choices), checks the SDK extra is
installed (naming the ``pip install`` that fixes it), imports the provider module only
then, rejects unknown or misspelled options (suggesting the closest valid one), and
finally constructs the backend. Nothing is routed on "whichever keyword happens to be
present"; that is :func:`cloudrift.core.auth.select_auth`'s job, and it is strict too.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloudrift.core.exceptions import ConfigurationError


@dataclass(frozen=True)
class ProviderSpec:
    """Where a provider lives and what it needs installed."""

    #: Dotted module path, imported only when this provider is chosen.
    module: str
    #: Name of the backend class (or factory callable) in that module.
    attr: str
    #: The cloudrift extra that installs the SDK, e.g. ``"aws"``; None when none is needed.
    extra: str | None = None
    #: Top-level modules that must be importable, e.g. ``("aioboto3",)``.
    requires: tuple[str, ...] = field(default_factory=tuple)


def install_hint(extra: str) -> str:
    """The exact command that installs an extra."""
    return f'pip install "cloudrift[{extra}]"'


def _importable(module: str) -> bool:
    """True when ``module`` can be imported; a dotted name whose parent is missing is not."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # find_spec imports the parent package of a dotted name, and raises when the
        # parent itself is not installed (e.g. "azure.identity" without "azure").
        return False


def require_modules(what: str, modules: tuple[str, ...], extra: str | None) -> None:
    """Raise ConfigurationError naming the extra if any of ``modules`` is missing."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        hint = f"; install it with: {install_hint(extra)}" if extra else ""
        raise ConfigurationError(
            f"{what} needs the package(s) {', '.join(missing)}, which are not installed{hint}"
        )


def resolve_provider(category: str, provider: str, table: Mapping[str, ProviderSpec]) -> Any:
    """Import and return the backend class for ``provider`` (lazily, with clear errors)."""
    if not isinstance(provider, str) or provider not in table:
        valid = ", ".join(sorted(table))
        close = difflib.get_close_matches(str(provider), list(table), n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"unknown {category} provider {provider!r}; valid providers: {valid}.{suggestion}"
        )
    spec = table[provider]
    what = f"the {provider!r} {category} provider"
    require_modules(what, spec.requires, spec.extra)
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        hint = f"; install it with: {install_hint(spec.extra)}" if spec.extra else ""
        raise ConfigurationError(f"{what} could not be imported ({exc}){hint}") from exc
    return getattr(module, spec.attr)


def accepted_options(target: Any) -> tuple[set[str], bool]:
    """The keyword names ``target`` accepts, and whether it takes ``**kwargs``."""
    params = inspect.signature(target).parameters.values()
    names = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name != "self"
    }
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def check_options(where: str, target: Any, options: Mapping[str, Any]) -> None:
    """Reject option names ``target`` does not accept, suggesting the closest valid one."""
    names, takes_any = accepted_options(target)
    if takes_any:
        return
    unknown = sorted(set(options) - names)
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(names), n=1)
        problems.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigurationError(
        f"unknown option(s) for {where}: {', '.join(problems)}; "
        f"valid options: {', '.join(sorted(names))}"
    )


def build_provider(
    category: str, provider: str, table: Mapping[str, ProviderSpec], options: Mapping[str, Any]
) -> Any:
    """Resolve ``provider`` in ``table``, validate ``options`` and construct the backend."""
    target = resolve_provider(category, provider, table)
    check_options(f"the {provider!r} {category} provider", target, options)
    return target(**options)


__all__ = [
    "ProviderSpec",
    "accepted_options",
    "build_provider",
    "check_options",
    "install_hint",
    "require_modules",
    "resolve_provider",
]
