"""YAML settings files with ``${VAR}`` / ``${VAR:-default}`` interpolation.

Interpolation runs on the parsed string scalars, never on the raw text, so a value
taken from the environment can never inject YAML structure. ``$${`` writes a literal
``${``. A variable that is unset and has no default is an error naming the YAML path.

Nothing here decides a value's type by its look: an interpolated value stays text, and
an unquoted number or boolean is kept as a :class:`YamlLiteral` (its text as written
plus YAML's reading) until the settings know the type of the option it lands in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cloudrift.core.exceptions import ConfigurationError

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ANY_REF = re.compile(r"\$\{")


def interpolate(value: str, env: Mapping[str, str] | None = None, *, where: str = "value") -> str:
    """``value`` with every ``${VAR}`` / ``${VAR:-default}`` replaced from ``env``.

    ``${VAR:-default}`` uses the default when VAR is unset or empty (as in the shell).
    """
    environ = os.environ if env is None else env

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "\x00{"
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        if found is not None:  # set but empty, and no default: keep the empty value
            return ""
        raise ConfigurationError(
            f"{where}: environment variable {name} is not set; set it or write "
            f"${{{name}:-default}} to give a default"
        )

    result = _VAR.sub(substitute, value)
    leftover = _ANY_REF.search(result)
    if leftover is not None:
        raise ConfigurationError(
            f"{where}: malformed ${{...}} reference; write ${{NAME}} or ${{NAME:-default}} "
            "(NAME: letters, digits, underscores), or $${ for a literal ${"
        )
    return result.replace("\x00{", "${")


class YamlLiteral(str):
    """An unquoted YAML scalar that YAML reads as a number, boolean or date.

    It keeps the text exactly as written (``0123``, ``1.10``, ``yes``) and what YAML made
    of it (``yaml_value``): the settings then pick by the type of the option the value
    lands in, never by how it looks (``bucket: 2024`` is the string ``"2024"``,
    ``port: 6379`` the int 6379).
    """

    yaml_value: Any

    def __new__(cls, text: str, yaml_value: Any) -> YamlLiteral:
        self = super().__new__(cls, text)
        self.yaml_value = yaml_value
        return self

    def __getnewargs__(self) -> tuple[str, Any]:  # type: ignore[override]
        return (str.__str__(self), self.yaml_value)

    @property
    def text(self) -> str:
        """The scalar as written in the file (a plain ``str``)."""
        return str.__str__(self)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with unquoted non-string scalars kept as YamlLiteral."""


def _literal(
    construct: Callable[[yaml.SafeLoader, yaml.ScalarNode], Any],
) -> Callable[[yaml.SafeLoader, yaml.ScalarNode], Any]:
    def build(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = construct(loader, node)
        # Only a plain (unquoted) scalar is typed by its look; a quoted one with an
        # explicit tag (``!!int "12"``) states its type, so YAML's value is kept.
        if node.style is None:
            return YamlLiteral(node.value, value)
        return value

    return build


for _tag, _construct in (
    ("tag:yaml.org,2002:int", yaml.SafeLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.SafeLoader.construct_yaml_float),
    ("tag:yaml.org,2002:bool", yaml.SafeLoader.construct_yaml_bool),
    ("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_timestamp),
):
    _Loader.add_constructor(_tag, _literal(_construct))


def _walk(node: Any, env: Mapping[str, str] | None, path: str) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, item in node.items():
            if isinstance(key, YamlLiteral):
                key = key.text  # ``2024:`` names the key "2024", as written
            if not isinstance(key, str):
                raise ConfigurationError(
                    f"{path or 'YAML root'}: key {key!r} is not a string; quote it"
                )
            out[key] = _walk(item, env, f"{path}.{key}" if path else key)
        return out
    if isinstance(node, list):
        return [_walk(item, env, f"{path}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return interpolate(node, env, where=path)
    return node


def load_yaml(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read a settings file: a mapping at the root, every string interpolated."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the cloudrift settings file {file}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        # The YAML error quotes the offending line, which may hold a secret: keep only
        # the problem and its position.
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigurationError(f"{file} is not valid YAML: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{file}: the root of a cloudrift settings file must be a mapping "
            f"(storage:, queue:, ...), not a {type(data).__name__}"
        )
    walked: dict[str, Any] = _walk(data, env, "")
    return walked


__all__ = ["YamlLiteral", "interpolate", "load_yaml"]
