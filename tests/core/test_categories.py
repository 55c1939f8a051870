"""The category registry: one entry per category drives settings, container, deps, health
and the testing helpers, so a new category is one registry entry plus its own package."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cloudrift.core import categories
from cloudrift.core.categories import CategorySpec, Slot
from cloudrift.core.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- a throw-away category


class Widget:
    """The in-memory backend of the test-only ``widget`` category."""

    provider = "memory"

    def __init__(self, *, colour: str = "blue") -> None:
        self.colour = colour
        self.closed = False

    async def health_check(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True


def get_widget(provider: str, **options: Any) -> Widget:
    """The widget category's factory: only ``memory`` exists."""
    if provider != "memory":
        raise ConfigurationError(f"unknown widget provider {provider!r}; valid providers: memory")
    return Widget(**options)


WIDGET = CategorySpec(
    name="widget",
    factory="tests.core.test_categories:get_widget",
    backend=Slot(
        "widget",
        "get_widget_dep",
        "widget_dep",
        "WidgetDep",
        interface="tests.core.test_categories:Widget",
    ),
    unavailable=ConfigurationError,
)

# Runs in a fresh interpreter: the widget entry is added before anything reads the
# registry, exactly as a built-in entry is; no other file knows about widgets.
_WIDGET_APP = """
from cloudrift.core import categories
from tests.core.test_categories import WIDGET, Widget
categories.register(WIDGET)

import dataclasses
import json
from fastapi import FastAPI
from fastapi.testclient import TestClient
from cloudrift.config import CloudriftSettings
from cloudrift_fastapi import (
    WidgetDep, cloudrift_lifespan, health_router, memory_settings, override_backends, widget_dep,
)

seen = {}
settings = CloudriftSettings()  # CLOUDRIFT_WIDGET__* from the environment
seen["settings"] = [settings.backend("widget").provider, settings.backend("widget").options]
seen["memory_settings"] = memory_settings().backend("widget").provider

app = FastAPI(lifespan=cloudrift_lifespan(settings))
app.include_router(health_router())

@app.get("/colour")
async def colour(widget: WidgetDep) -> str:
    return widget.colour

with TestClient(app) as client:
    built = app.state.cloudrift.widget()
    seen["dependency"] = client.get("/colour").json()
    seen["health"] = client.get("/health/ready").json()
seen["closed_at_shutdown"] = built.closed

fake = Widget(colour="green")
with override_backends(app, widget=fake), TestClient(app) as client:
    seen["override"] = [client.get("/colour").json(), app.state.cloudrift.widget() is fake]
seen["named_is_stable"] = widget_dep("spare") is widget_dep("spare")
print(json.dumps(seen))
"""


def test_a_registered_category_is_picked_up_everywhere() -> None:
    """A ``widget`` entry alone gives env settings, a built and closed backend, a
    dependency, a health entry and test overrides."""
    env = {
        "PATH": "/usr/bin:/bin",
        "CLOUDRIFT_WIDGET__PROVIDER": "memory",
        "CLOUDRIFT_WIDGET__COLOUR": "red",
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WIDGET_APP)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["settings"] == ["memory", {"colour": "red"}]
    assert seen["memory_settings"] == "memory"
    assert seen["dependency"] == "red"
    assert seen["health"] == {
        "status": "ok",
        "backends": {"widget.default": {"provider": "memory", "status": "ok"}},
    }
    assert seen["closed_at_shutdown"] is True
    assert seen["override"] == ["green", True]
    assert seen["named_is_stable"] is True


# ---------------------------------------------------------------- the registry itself


def test_builtin_categories_in_build_order() -> None:
    """The seven categories, in the order backends are built (closed in reverse)."""
    assert categories.names() == (
        "storage",
        "queue",
        "topic",
        "subscription",
        "document",
        "cache",
        "email",
    )


def test_slots_carry_the_public_dependency_names() -> None:
    """Each slot names its dependency, named factory and alias; document has two slots."""
    keys = {s.key: s.names for spec in categories.specs() for s in spec.slots}
    assert keys["storage"] == ("get_storage_dep", "storage_dep", "StorageDep")
    assert keys["mongodb"] == ("get_mongodb_dep", "mongodb_dep", "MongoDep")
    assert keys["database"] == ("get_database_dep", "database_dep", "DatabaseDep")
    assert keys["topic"] == ("get_topic_dep", "topic_dep", "TopicDep")
    assert keys["subscription"] == ("get_subscription_dep", "subscription_dep", "SubscriptionDep")
    assert categories.slot_keys() == (
        "storage",
        "queue",
        "topic",
        "subscription",
        "mongodb",
        "database",
        "cache",
        "email",
    )


def test_every_registered_name_is_exported_by_the_fastapi_package() -> None:
    """``cloudrift_fastapi`` serves each dependency name the registry declares."""
    import cloudrift_fastapi
    from cloudrift_fastapi import deps

    for spec in categories.specs():
        for slot in spec.slots:
            assert getattr(cloudrift_fastapi, slot.dependency) is deps.dependency(slot.key)
            assert getattr(cloudrift_fastapi, slot.named_dependency)("x") is deps.dependency(
                slot.key, "x"
            )
            assert getattr(cloudrift_fastapi, slot.alias) is not None


def test_unknown_category_lists_the_known_ones() -> None:
    """Asking for a category that does not exist names every valid one."""
    with pytest.raises(ConfigurationError, match="unknown category 'blob'; categories: storage"):
        categories.get("blob")


def test_register_refuses_a_taken_name_or_dependency() -> None:
    """A second ``storage`` or a slot reusing ``get_cache_dep`` is refused."""
    with pytest.raises(ConfigurationError, match="already registered"):
        categories.register(dataclasses.replace(WIDGET, name="storage"))
    clash = Slot("gadget", "get_cache_dep", "gadget_dep", "GadgetDep")
    spec = CategorySpec("gadget", "x:y", clash, ConfigurationError)
    with pytest.raises(ConfigurationError, match="get_cache_dep"):
        categories.register(spec)


def test_register_after_the_settings_exist_is_refused() -> None:
    """Once the settings model is built from the registry, a new entry could not reach
    it: registering then fails loudly instead of half-working."""
    import cloudrift.config._settings  # noqa: F401 - builds the settings model

    with pytest.raises(ConfigurationError, match="registered too late"):
        categories.register(WIDGET)
    assert "widget" not in categories.names()


def test_registry_import_is_light() -> None:
    """Importing the registry loads no web framework, pydantic or SDK."""
    code = (
        "import sys, cloudrift.core.categories;"
        "heavy = {'fastapi', 'pydantic', 'dependency_injector', 'boto3', 'aioboto3',"
        " 'redis', 'pymongo', 'cloudrift.storage', 'cloudrift.document'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"


def test_unknown_slot_lists_the_known_ones() -> None:
    """A dependency of a kind nobody serves is refused with the valid kinds."""
    from cloudrift_fastapi.deps import dependency

    with pytest.raises(ConfigurationError, match="unknown backend kind 'blob'; kinds: storage"):
        dependency("blob")
