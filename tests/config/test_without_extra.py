"""``import cloudrift.config`` works without the fastapi extra; using it says what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each probe blocks some modules (as if not installed) and reports what happened.
PROBE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
import cloudrift.config, cloudrift_fastapi, cloudrift_fastapi.pytest_plugin
print("imported")
from cloudrift.core.exceptions import ConfigurationError
try:
    {use}
except ConfigurationError as exc:
    print("error:", exc)
"""


def _probe(blocked: list[str], use: str) -> str:
    code = PROBE.format(blocked=blocked, use=use)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("missing", ["pydantic_settings", "yaml"])
def test_settings_without_the_extra_name_the_install_command(missing: str) -> None:
    """Using CloudriftSettings without its packages raises ConfigurationError naming the extra."""
    out = _probe([missing], "cloudrift.config.CloudriftSettings()")
    assert out.startswith("imported\n")
    assert f"needs {missing}, which is not installed" in out
    assert 'pip install "cloudrift[fastapi]"' in out


def test_fastapi_names_without_fastapi_name_the_install_command() -> None:
    """``cloudrift_fastapi.cloudrift_lifespan`` without FastAPI says how to install it."""
    out = _probe(["fastapi", "dependency_injector"], "cloudrift_fastapi.cloudrift_lifespan")
    assert out.startswith("imported\n")
    assert 'pip install "cloudrift[fastapi]"' in out


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A misspelt name is an AttributeError, not an install hint."""
    import cloudrift.config
    import cloudrift_fastapi

    with pytest.raises(AttributeError, match="CloudriftSetting"):
        _ = cloudrift.config.CloudriftSetting  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="get_storage_deps"):
        _ = cloudrift_fastapi.get_storage_deps  # type: ignore[attr-defined]
