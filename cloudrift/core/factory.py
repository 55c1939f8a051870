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
import functools
import importlib
import importlib.util
import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Unpack, is_typeddict

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


@dataclass(frozen=True)
class OptionInfo:
    """One option a provider takes: its name, its type hint and whether it is required."""

    name: str
    #: The resolved annotation (``typing.get_type_hints``); None when it cannot be read.
    annotation: Any
    required: bool


def _hints(target: Any) -> dict[str, Any]:
    """Resolved annotations of ``target`` (a class: its ``__init__``); {} if unreadable."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(func)
    except Exception:  # an annotation that cannot be resolved: names still checked
        return {}


def _unpacked(annotation: Any) -> type | None:
    """The TypedDict of a ``**kwargs: Unpack[TD]`` annotation, else None."""
    if typing.get_origin(annotation) is Unpack:
        (inner,) = typing.get_args(annotation)
        if is_typeddict(inner):
            return typing.cast(type, inner)
    return None


@functools.lru_cache(maxsize=64)
def group_options(group: type) -> Mapping[str, OptionInfo]:
    """The options of a TypedDict option group (names, resolved types, required-ness)."""
    hints = typing.get_type_hints(group)
    required: frozenset[str] = getattr(group, "__required_keys__", frozenset())
    return types.MappingProxyType(
        {name: OptionInfo(name, hint, name in required) for name, hint in hints.items()}
    )


# A provider's signature does not change while the process runs, and reading its
# annotations costs about a millisecond: read each one once.
@functools.lru_cache(maxsize=256)
def provider_options(target: Any) -> tuple[Mapping[str, OptionInfo], bool]:
    """Every keyword option ``target`` accepts, and whether it also takes any other.

    ``**kwargs: Unpack[SomeTypedDict]`` contributes the TypedDict's keys (with their
    types), so shared option groups are seen like written-out parameters; a plain
    ``**kwargs`` means "takes any".
    """
    params = inspect.signature(target).parameters.values()
    hints = _hints(target)
    options: dict[str, OptionInfo] = {}
    takes_any = False
    for p in params:
        if p.name == "self":
            continue
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            options[p.name] = OptionInfo(
                p.name, hints.get(p.name), p.default is inspect.Parameter.empty
            )
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            group = _unpacked(hints.get(p.name))
            if group is None:
                takes_any = True
            else:
                options.update(group_options(group))
    return types.MappingProxyType(options), takes_any


def accepted_options(target: Any) -> tuple[set[str], bool]:
    """The keyword names ``target`` accepts, and whether it takes any other ``**kwargs``."""
    options, takes_any = provider_options(target)
    return set(options), takes_any


def _refuse_unknown(where: str, unknown: list[str], names: set[str]) -> None:
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


def check_options(where: str, target: Any, options: Mapping[str, Any]) -> None:
    """Reject option names ``target`` does not accept, suggesting the closest valid one,
    and string options (credentials, names, URLs) given something else."""
    names, takes_any = accepted_options(target)
    if not takes_any:
        unknown = sorted(set(options) - names)
        reject_renamed(where, unknown, {k: v for k, v in RENAMED.items() if v in names})
        _refuse_unknown(where, unknown, names)
    check_option_types(where, target, options)


def check_option_group(where: str, group: type, options: Mapping[str, Any]) -> None:
    """Reject names that are not in the TypedDict ``group`` (for ``**options`` given
    straight to a constructor, which the factory's own check does not see)."""
    names = set(group_options(group))
    _refuse_unknown(where, sorted(set(options) - names), names)


#: Option names that changed, and what they are now (refused, naming the new one).
RENAMED: Final[Mapping[str, str]] = {
    "retry_attempts": "max_attempts",
    "retry_total": "max_attempts",
}


def reject_renamed(where: str, options: Iterable[str], renamed: Mapping[str, str]) -> None:
    """ConfigurationError for each old option name in ``options``, naming its new one.

    A hard error rather than a deprecation: the old names did not all mean the same
    (``retry_attempts`` counted retries on the redis queue, attempts on the cache), so
    mapping them silently would change behaviour without a word.
    """
    old = sorted(name for name in options if name in renamed)
    if old:
        moved = ", ".join(f"{name!r} is now {renamed[name]!r}" for name in old)
        raise ConfigurationError(
            f"{where}: renamed option(s): {moved} (total attempts including the first; "
            "1 = no retry)"
        )


_STRINGY = frozenset({"str", "Secret", "NoneType"})


def _is_string_option(annotation: Any) -> bool:
    """True for ``str``, ``Secret`` and their optional unions (credentials, names, URLs)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    names = {getattr(m, "__name__", "") for m in members}
    return "str" in names and names <= _STRINGY


def _stringlike(value: object) -> bool:
    if isinstance(value, str):
        return True
    getter = getattr(value, "get_secret_value", None)  # Secret, pydantic's SecretStr
    return callable(getter) and isinstance(getter(), str)


def check_option_types(where: str, target: Any, options: Mapping[str, Any]) -> None:
    """ConfigurationError naming each string option (a credential, name, URL...) that
    was given something else, e.g. ``aws_secret_access_key=12345``; the value itself
    is never shown (it may be a secret)."""
    known, _ = provider_options(target)
    wrong = sorted(
        name
        for name, value in options.items()
        if value is not None
        and name in known
        and _is_string_option(known[name].annotation)
        and not _stringlike(value)
    )
    if wrong:
        got = ", ".join(f"{name} (got {type(options[name]).__name__})" for name in wrong)
        raise ConfigurationError(f"{where}: option(s) must be a str: {got}")


def build_provider(
    category: str, provider: str, table: Mapping[str, ProviderSpec], options: Mapping[str, Any]
) -> Any:
    """Resolve ``provider`` in ``table``, validate ``options`` and construct the backend.

    ``telemetry=False`` is taken here for every provider: the backend is not observed.
    """
    target = resolve_provider(category, provider, table)
    options = dict(options)
    telemetry = options.pop("telemetry", True)
    if not isinstance(telemetry, bool):
        raise ConfigurationError(f"telemetry must be True or False, got {type(telemetry).__name__}")
    check_options(f"the {provider!r} {category} provider", target, options)
    backend = target(**options)
    if not telemetry:
        backend.telemetry_enabled = False
    return backend


__all__ = [
    "RENAMED",
    "OptionInfo",
    "ProviderSpec",
    "accepted_options",
    "build_provider",
    "check_option_group",
    "check_option_types",
    "check_options",
    "group_options",
    "install_hint",
    "provider_options",
    "reject_renamed",
    "require_modules",
    "resolve_provider",
]
