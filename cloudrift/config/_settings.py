"""The settings model: one section per category, each with one or several named backends."""

from __future__ import annotations

import contextvars
import importlib
import inspect
import os
import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cloudrift.config._yaml import coerce_scalar, load_yaml
from cloudrift.core.exceptions import CloudRiftError, ConfigurationError
from cloudrift.core.factory import resolve_provider
from cloudrift.core.secrets import redact_url

#: The category sections, in the order backends are built (and closed in reverse).
CATEGORIES: Final = ("storage", "queue", "document", "cache", "email")

#: Env var naming a YAML settings file to read (env vars still win over it).
CONFIG_ENV: Final = "CLOUDRIFT_CONFIG"

# Option names whose values are credentials: held as SecretStr, never shown.
_SECRET_NAME = re.compile(
    r"(?i)(password|passwd|secret|token|access_key|account_key|api_key|private_key|"
    r"signing_key|connection_string|sas|credential)"
)
# URL-like options are secret only when they carry a password.
_URL_NAME = re.compile(r"(?i)(^|_)(url|uri|dsn)$")
_BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# The factory of each category (imported only when a backend is built).
_FACTORIES: Final = {
    "storage": ("cloudrift.storage", "get_storage"),
    "queue": ("cloudrift.messaging", "get_queue"),
    "document": ("cloudrift.document", "get_mongodb"),
    "cache": ("cloudrift.cache", "get_cache"),
    "email": ("cloudrift.email", "get_email"),
}

_yaml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "cloudrift_yaml_path", default=None
)


def is_secret_option(name: str, value: Any) -> bool:
    """True when option ``name`` (with this value) holds a credential."""
    if isinstance(value, SecretStr):
        return True
    if _SECRET_NAME.search(name):
        return True
    return bool(_URL_NAME.search(name) and isinstance(value, str) and redact_url(value) != value)


class BackendConfig(BaseModel):
    """One backend: its ``provider`` plus the options its factory takes.

    Credential options (keys, passwords, tokens, connection strings, URLs with a
    password) are held as ``SecretStr`` and revealed only to the factory.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    provider: str = Field(min_length=1)
    #: Cache only: the seed's auth method (``from_url``, ``from_credentials``, ...).
    auth_method: str | None = None
    #: Document only: the database ``get_database_dep`` hands out.
    database: str | None = None

    @field_validator("provider")
    @classmethod
    def _provider_name(cls, value: str) -> str:
        if not _PROVIDER_NAME.match(value):
            raise ValueError(
                "provider must be a provider name in lowercase, such as 's3', 'redis' or "
                "'memory' (a section given as one string is read as a provider name)"
            )
        return value

    @model_validator(mode="after")
    def _hide_secrets(self) -> BackendConfig:
        extra = self.__pydantic_extra__
        if extra:
            for name, value in list(extra.items()):
                if isinstance(value, str) and is_secret_option(name, value):
                    extra[name] = SecretStr(value)
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The factory's keyword options (secrets still wrapped)."""
        return dict(self.__pydantic_extra__ or {})

    def factory_options(self) -> dict[str, Any]:
        """The factory's keyword options with secrets revealed (pass straight to it)."""
        return {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in self.options.items()
        }


class SectionConfig(BaseModel):
    """A category's backends by name, and which one is the default.

    Accepts ``{"provider": ..., **options}`` (one backend, named ``default``), a bare
    provider name, or ``{"default": name, "backends": {name: {...}, ...}}``.
    """

    model_config = ConfigDict(extra="forbid")

    default: str
    backends: dict[str, BackendConfig]

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"default": "default", "backends": {"default": {"provider": data}}}
        if not isinstance(data, Mapping):
            return data
        if "backends" in data:
            if "provider" in data:
                raise ValueError(
                    "give either provider (one backend) or backends (several named ones), not both"
                )
            backends = data["backends"]
            if isinstance(backends, Mapping) and "default" not in data:
                names = list(backends)
                if len(names) == 1:
                    return {**data, "default": names[0]}
                if "default" in names:
                    return {**data, "default": "default"}
                raise ValueError(
                    f"several backends ({', '.join(names)}): say which is the default "
                    "with default: <name>"
                )
            return data
        if "provider" in data:
            return {"default": "default", "backends": {"default": dict(data)}}
        raise ValueError(
            "give a provider (one backend) or backends with a default (several named ones)"
        )

    @model_validator(mode="after")
    def _check_names(self) -> SectionConfig:
        if not self.backends:
            raise ValueError("backends is empty; configure at least one backend")
        for name in self.backends:
            if not _BACKEND_NAME.match(name):
                raise ValueError(
                    f"backend name {name!r} must be lowercase letters, digits and "
                    "underscores, starting with a letter (env var names are case-insensitive)"
                )
        if self.default not in self.backends:
            raise ValueError(
                f"default {self.default!r} is not one of the backends: {', '.join(self.backends)}"
            )
        return self


class _CoercingEnvSource(EnvSettingsSource):
    """Env vars as usual, with a typo in a ``CLOUDRIFT_*`` name refused and scalars typed.

    Env values are strings; ``CLOUDRIFT_CACHE__PORT=6380`` should reach the factory as an
    int, so non-secret leaves that spell an int/float/bool exactly are converted.
    """

    def __call__(self) -> dict[str, Any]:
        known = {f"{self.env_prefix}{name}".lower() for name in self.settings_cls.model_fields}
        known.add(CONFIG_ENV.lower())
        for var in os.environ:
            low = var.lower()
            # Only nested names (with ``__``) are surely meant as settings: other
            # CLOUDRIFT_* variables (e.g. CLOUDRIFT_REDIS_SERVER for tooling) are left alone.
            if (
                low.startswith(self.env_prefix.lower())
                and "__" in low
                and low.split("__")[0] not in known
            ):
                valid = ", ".join(sorted(k.upper() for k in known))
                raise ConfigurationError(
                    f"unknown cloudrift setting in the environment: {var}; "
                    f"valid names start with one of: {valid}"
                )
        data = super().__call__()
        for category in CATEGORIES:
            if isinstance(data.get(category), dict):
                data[category] = _coerce(data[category])
        return data


def _coerce(node: Any, name: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _coerce(v, k) for k, v in node.items()}
    if (
        isinstance(node, str)
        and name not in ("provider", "default")
        and not is_secret_option(name, node)
    ):
        return coerce_scalar(node)
    return node


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file given to ``from_yaml`` or named by ``$CLOUDRIFT_CONFIG``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        path = _yaml_path.get()
        if path is None and os.environ.get(CONFIG_ENV):
            path = Path(os.environ[CONFIG_ENV])
        return load_yaml(path) if path is not None else {}


def _describe(exc: ValidationError, title: str) -> str:
    """Each problem as ``path: message`` — never the input value (it may be a secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting; check the spelling"
        lines.append(f"  {path or '(root)'}: {msg}")
    return f"{title}:\n" + "\n".join(lines)


# Options a category's factory consumes itself, before the provider sees the rest.
_FACTORY_OPTIONS: Final = {"document": frozenset({"driver"})}
_LAX = ConfigDict(arbitrary_types_allowed=True)


def _option_problems(
    category: str, path: str, provider: str, options: Mapping[str, Any], package: Any
) -> list[str]:
    """Each option whose value does not fit the provider's signature, and each required
    option left out, as ``path.option: reason`` (the value itself is never quoted).

    Best effort: when the provider cannot be resolved (unknown, extra missing) or its
    annotations cannot be read, the factory's own checks report the problem instead.
    """
    table = getattr(package, "PROVIDERS", None)
    if not isinstance(table, Mapping) or provider not in table:
        return []
    try:
        target = resolve_provider(category, provider, table)
        signature = inspect.signature(target)
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:
        return []
    skip = _FACTORY_OPTIONS.get(category, frozenset()) | {"self", "auth_method"}
    problems = []
    for param in signature.parameters.values():
        if param.name in skip or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if param.name not in options:
            if param.default is param.empty:
                problems.append(f"{path}.{param.name}: required option is missing")
            continue
        hint = hints.get(param.name)
        if hint is None:
            continue
        try:
            TypeAdapter(hint, config=_LAX).validate_python(options[param.name])
        except ValidationError as exc:
            reason = exc.errors(include_input=False, include_url=False)[0]["msg"]
            problems.append(f"{path}.{param.name}: {reason}")
        except Exception:  # an annotation pydantic cannot check: leave it to the provider
            continue
    return problems


class CloudriftSettings(BaseSettings):
    """Every configured backend, from keywords, env vars (``CLOUDRIFT_*``) and YAML.

    Precedence: keywords > env vars > the YAML file. Nested env names use ``__``:
    ``CLOUDRIFT_STORAGE__PROVIDER=s3``, ``CLOUDRIFT_STORAGE__BACKENDS__AVATARS__BUCKET=a``.
    Invalid settings raise ConfigurationError naming each path that is wrong.
    """

    model_config = SettingsConfigDict(
        env_prefix="CLOUDRIFT_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )

    #: ``production`` turns on :meth:`validate_production_security` at startup.
    environment: str = "development"
    #: Contact every backend at startup (health check) and refuse to start if one fails.
    verify_on_startup: bool = False
    storage: SectionConfig | None = None
    queue: SectionConfig | None = None
    document: SectionConfig | None = None
    cache: SectionConfig | None = None
    email: SectionConfig | None = None

    _categories: ClassVar[tuple[str, ...]] = CATEGORIES

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # Chaining would print pydantic's text, which quotes input values (secrets).
            raise ConfigurationError(_describe(exc, "invalid cloudrift settings")) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _CoercingEnvSource(settings_cls), _YamlSource(settings_cls))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> CloudriftSettings:
        """Settings read from a YAML file (env vars and ``overrides`` still win)."""
        token = _yaml_path.set(Path(path))
        try:
            return cls(**overrides)
        finally:
            _yaml_path.reset(token)

    # ------------------------------------------------------------------ reading

    @property
    def is_production(self) -> bool:
        """True when ``environment`` is ``production`` (any case)."""
        return self.environment.strip().lower() == "production"

    def section(self, category: str) -> SectionConfig | None:
        """The section of ``category`` or None when it is not configured."""
        if category not in CATEGORIES:
            raise ConfigurationError(
                f"unknown category {category!r}; categories: {', '.join(CATEGORIES)}"
            )
        section: SectionConfig | None = getattr(self, category)
        return section

    def default_name(self, category: str) -> str | None:
        """The name of ``category``'s default backend (None when not configured)."""
        section = self.section(category)
        return None if section is None else section.default

    def backend(self, category: str, name: str | None = None) -> BackendConfig:
        """The config of one backend (the default when ``name`` is None)."""
        section = self.section(category)
        if section is None:
            raise ConfigurationError(
                f"no {category} backend is configured; set {category}: in the settings "
                f"(e.g. CLOUDRIFT_{category.upper()}__PROVIDER=memory)"
            )
        key = section.default if name is None else name
        if key not in section.backends:
            raise ConfigurationError(
                f"no {category} backend named {key!r}; configured: {', '.join(section.backends)}"
            )
        return section.backends[key]

    def iter_backends(self) -> Iterator[tuple[str, str, BackendConfig]]:
        """``(category, name, config)`` of every backend, in build order."""
        for category in CATEGORIES:
            section = self.section(category)
            if section is not None:
                for name, config in section.backends.items():
                    yield category, name, config

    @model_validator(mode="after")
    def _check_category_options(self) -> CloudriftSettings:
        for category, name, config in self.iter_backends():
            where = f"{category}.backends.{name}"
            if config.auth_method is not None and category != "cache":
                raise ValueError(f"{where}.auth_method: only cache backends take auth_method")
            if config.database is not None and category != "document":
                raise ValueError(f"{where}.database: only document backends take database")
        return self

    # ------------------------------------------------------------------ building

    def open_backend(self, category: str, name: str | None = None) -> Any:
        """Build one backend with its category's factory (the caller closes it).

        Errors from the factory are re-raised as ConfigurationError naming the path.
        """
        config = self.backend(category, name)
        key = name or self.default_name(category)
        module, attr = _FACTORIES[category]
        package = importlib.import_module(module)
        factory = getattr(package, attr)
        options = config.factory_options()
        problems = _option_problems(
            category, f"{category}.backends.{key}", config.provider, options, package
        )
        if problems:
            raise ConfigurationError("; ".join(problems))
        try:
            if category == "cache":
                return factory(config.provider, config.auth_method, **options)
            return factory(config.provider, **options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{category}.backends.{key}: {exc.message}") from exc
        except CloudRiftError as exc:
            raise ConfigurationError(f"{category}.backends.{key}: {exc.message}") from exc
        except (TypeError, ValueError) as exc:
            # A plain TypeError/ValueError text may quote the value: name only its kind.
            raise ConfigurationError(
                f"{category}.backends.{key}: invalid option value ({type(exc).__name__}); "
                "check the options' types"
            ) from exc

    def validate_production_security(self) -> None:
        """Refuse settings unsafe for production, listing every problem at once.

        Placeholder or empty credentials, plaintext SMTP, disabled TLS verification and
        ``memory`` / ``file`` providers each raise ConfigurationError.
        """
        from cloudrift.config._security import production_problems

        problems = production_problems(self)
        if problems:
            raise ConfigurationError(
                "settings are not safe for production:\n" + "\n".join(f"  {p}" for p in problems)
            )


__all__ = [
    "CATEGORIES",
    "CONFIG_ENV",
    "BackendConfig",
    "CloudriftSettings",
    "SectionConfig",
    "is_secret_option",
]
