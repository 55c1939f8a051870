"""The backends one request or job works with, read from the running app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloudrift.cache import Cache
from cloudrift.email import Email
from cloudrift.messaging import Queue, Topic
from cloudrift.storage import Storage
from example_app.config import IntakeConfig
from example_app.records import COLLECTION

#: ``app.state`` attribute holding the service's IntakeConfig.
CONFIG_ATTR = "intake_config"


@dataclass(frozen=True)
class Services:
    """Every backend of the running app plus the service's own settings."""

    storage: Storage
    queue: Queue
    database: Any
    cache: Cache
    email: Email
    config: IntakeConfig
    #: Where ``document.processed`` events go; None without a ``topic`` section.
    topic: Topic | None = None

    @property
    def documents(self) -> Any:
        """The collection holding the document records."""
        return self.database[COLLECTION]


def services_of(app: Any) -> Services:
    """The backends the cloudrift lifespan built for ``app`` (overrides included)."""
    from cloudrift_fastapi.lifespan import STATE_ATTR

    box = getattr(app.state, STATE_ATTR)
    return Services(
        storage=box.storage(),
        queue=box.queue(),
        database=box.database(),
        cache=box.cache(),
        email=box.email(),
        config=getattr(app.state, CONFIG_ATTR),
        topic=topic_of(box),
    )


def topic_of(box: Any) -> Topic | None:
    """The default topic of a backend container, or None when none is configured."""
    if box.settings().section("topic") is None:
        return None
    topic: Topic = box.topic()
    return topic


__all__ = ["CONFIG_ATTR", "Services", "services_of", "topic_of"]
