"""YAML settings files with ``${VAR}`` / ``${VAR:-default}`` interpolation.

Interpolation runs on the parsed string scalars, never on the raw text, so a value
taken from the environment can never inject YAML structure. ``$${`` writes a literal
``${``. A variable that is unset and has no default is an error naming the YAML path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
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


def coerce_scalar(text: str) -> Any:
    """An int, float or bool when ``text`` spells one exactly; the text otherwise.

    Used for values that arrive as strings (env vars, interpolated YAML scalars), so
    ``port: ${REDIS_PORT:-6379}`` gives the integer 6379.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[+-]?(0|[1-9][0-9]*)", text):
        return int(text)
    if re.fullmatch(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+)", text):
        return float(text)
    return text


def _walk(node: Any, env: Mapping[str, str] | None, path: str) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, item in node.items():
            if not isinstance(key, str):
                raise ConfigurationError(
                    f"{path or 'YAML root'}: key {key!r} is not a string; quote it"
                )
            out[key] = _walk(item, env, f"{path}.{key}" if path else key)
        return out
    if isinstance(node, list):
        return [_walk(item, env, f"{path}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return coerce_scalar(interpolate(node, env, where=path))
    return node


def load_yaml(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read a settings file: a mapping at the root, every string interpolated."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the cloudrift settings file {file}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
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


__all__ = ["coerce_scalar", "interpolate", "load_yaml"]
