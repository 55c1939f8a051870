"""Option values converted by the type the provider declares, never by their look.

Env vars, ``.env`` lines, secret files and interpolated YAML values all arrive as text;
an unquoted YAML number or boolean arrives as a :class:`~cloudrift.config._yaml.YamlLiteral`
(its text as written plus YAML's reading). The provider's constructor says what each
option is (``bucket: str``, ``max_pool_connections: int``, ``verify: bool``), so the text
becomes exactly that: ``CLOUDRIFT_STORAGE__BUCKET=123`` stays the string ``"123"`` and
``CLOUDRIFT_STORAGE__MAX_POOL_CONNECTIONS=50`` becomes the int 50. Text that cannot become
the declared type is left as it is, and the option check that runs before the backend is
built reports it naming its path.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ConfigDict, TypeAdapter

from cloudrift.config._yaml import YamlLiteral
from cloudrift.core.secrets import is_secret_option

_LAX: Final = ConfigDict(arbitrary_types_allowed=True)


@dataclass(frozen=True)
class ProviderOptions:
    """What a provider's constructor accepts: every option, its type, what is required."""

    #: Declared type of each option (``None`` when the option has no annotation).
    types: Mapping[str, Any]
    #: Options without a default.
    required: frozenset[str]
    #: True when the constructor takes arbitrary ``**options`` it does not describe.
    takes_any: bool


def _hints(target: Any) -> dict[str, Any]:
    func = target.__init__ if inspect.isclass(target) else target
    return typing.get_type_hints(func)


# Reading annotations costs more than building the rest of the settings: a provider's
# signature does not change while the process runs, so read it once.
@functools.lru_cache(maxsize=256)
def provider_options(
    category: str, provider: str, target: Any, skip: frozenset[str]
) -> ProviderOptions:
    """The options ``target`` (the provider's class or factory) accepts, typed.

    ``**options: Unpack[SomeTypedDict]`` contributes the TypedDict's keys; a plain
    ``**options`` makes ``takes_any`` true unless the provider is known to forward them
    to a typed function. Raises whatever reading the annotations raises.
    """
    signature = inspect.signature(target)
    hints = _hints(target)
    types: dict[str, Any] = {}
    required: set[str] = set()
    takes_any = False
    for param in signature.parameters.values():
        if param.name in skip or param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            hint = hints.get(param.name)
            if typing.get_origin(hint) is typing.Unpack:
                (typed,) = typing.get_args(hint)
                types.update(typing.get_type_hints(typed))
                required.update(getattr(typed, "__required_keys__", ()))
                continue
            takes_any = True
            continue
        types[param.name] = hints.get(param.name)
        if param.default is param.empty:
            required.add(param.name)
    return ProviderOptions(types=types, required=frozenset(required), takes_any=takes_any)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def adapter(hint: Any) -> TypeAdapter[Any]:
    """A (cached) lax pydantic adapter for ``hint``."""
    try:
        found = _ADAPTERS.get(hint)
    except TypeError:  # an unhashable annotation: build it each time
        return TypeAdapter(hint, config=_LAX)
    if found is None:
        found = _ADAPTERS[hint] = TypeAdapter(hint, config=_LAX)
    return found


_STRUCTURED: Final = (dict, list, tuple, set, frozenset, Mapping, Sequence, Set)


def _structured(hint: Any) -> bool:
    """True when ``hint`` (or a member of its union) is a mapping or a collection."""
    if hint in _STRUCTURED or typing.get_origin(hint) in _STRUCTURED:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_structured(arg) for arg in typing.get_args(hint))
    return False


def _as(hint: Any, value: Any) -> tuple[bool, Any]:
    try:
        return True, adapter(hint).validate_python(value)
    except Exception:  # not convertible, or an annotation pydantic cannot check
        pass
    if isinstance(value, str) and _structured(hint):
        # A mapping or list option given as text (an env var, a secret file) is JSON.
        try:
            return True, adapter(hint).validate_json(value)
        except Exception:
            pass
    return False, None


def convert_text(name: str, value: Any, hint: Any, *, declared: bool) -> Any:
    """``value`` as the option's declared type when it arrived as text.

    Text (env vars, ``.env``, secret files, ``${VAR}``, quoted YAML) converts with
    pydantic's lax rules for ``hint``: ``"50"`` for an int is 50, ``"true"`` for a bool
    is True, any text for a str stays that text, and text for a mapping or list option
    is read as JSON. An unquoted YAML literal is its text
    as written for a str option (``bucket: 0123`` is ``"0123"``) and otherwise whatever
    of its text or YAML's reading fits. Values given as Python objects are never touched,
    and text that fits nothing is returned as text for the option check to report.
    ``declared`` is False when the provider does not say what the option is: text then
    stays text and a YAML literal keeps YAML's reading (a credential keeps its text).
    """
    if isinstance(value, YamlLiteral):
        if not declared or hint is None:
            return value.text if is_secret_option(name, value.text) else value.yaml_value
        ok, converted = _as(hint, value.text)
        if ok:
            return converted
        # YAML's reading rescues what only YAML spells (``0x1F``, ``.inf``), but never a
        # boolean: ``max_attempts: yes`` must not quietly become 1.
        if not isinstance(value.yaml_value, bool):
            ok, converted = _as(hint, value.yaml_value)
            if ok:
                return converted
        return value.text  # the option check reports it, as it would the same env text
    if isinstance(value, str) and declared and hint is not None:
        ok, converted = _as(hint, value)
        if ok:
            return converted
    return value


def plain(value: Any) -> Any:
    """``value`` with any YAML literal replaced by YAML's own reading (no type known)."""
    if isinstance(value, YamlLiteral):
        return value.yaml_value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


__all__ = ["ProviderOptions", "adapter", "convert_text", "plain", "provider_options"]
