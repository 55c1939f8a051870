"""The settings model: one section per category, each with one or several named backends."""

from __future__ import annotations

import contextvars
import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from cloudrift.config._convert import (
    ProviderOptions,
    adapter,
    convert_text,
    plain,
    provider_options,
)
from cloudrift.config._yaml import load_yaml
from cloudrift.core import categories
from cloudrift.core.exceptions import CloudRiftError, ConfigurationError
from cloudrift.core.factory import resolve_provider
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.secrets import is_secret_option

# The settings model is built from the category registry once; later registrations
# would not reach it, so the registry refuses them from here on.
_SPECS: Final = categories.seal()
#: The category sections, in the order backends are built (and closed in reverse).
CATEGORIES: Final = tuple(spec.name for spec in _SPECS)

#: Env var naming a YAML settings file to read (env vars still win over it).
CONFIG_ENV: Final = "CLOUDRIFT_CONFIG"

_BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_yaml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "cloudrift_yaml_path", default=None
)


# Where each value read from a named source came from, by its lowercased path
# (``("storage", "buckt") -> "environment variable CLOUDRIFT_STORAGE__BUCKT"``): filled
# while one CloudriftSettings is built, so an error can name what the user really set.
_origins: contextvars.ContextVar[dict[tuple[str, ...], str] | None] = contextvars.ContextVar(
    "cloudrift_setting_origins", default=None
)


class BackendConfig(BaseModel):
    """One backend: its ``provider`` plus the options its factory takes.

    Credential options (keys, passwords, tokens, connection strings, URLs with a
    password) are held as ``SecretStr`` and revealed only to the factory. A category's
    own fields (cache ``auth_method``, document ``database``: see
    :mod:`cloudrift.core.categories`) are read with :meth:`field`, not passed as options.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    provider: str = Field(min_length=1)
    #: False: this backend records no spans or metrics (``telemetry=False`` on the factory).
    telemetry: bool = True

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

    def field(self, name: str) -> str | None:
        """A category field of this backend (``"database"``, ``"auth_method"``) or None."""
        value = (self.__pydantic_extra__ or {}).get(name)
        return value if isinstance(value, str) else None

    @property
    def auth_method(self) -> str | None:
        """Cache only: the seed's auth method (``from_url``, ``from_credentials``, ...)."""
        return self.field("auth_method")

    @property
    def database(self) -> str | None:
        """Document only: the database ``get_database_dep`` hands out."""
        return self.field("database")

    @property
    def options(self) -> dict[str, Any]:
        """The factory's keyword options (secrets still wrapped; category fields left out)."""
        fields = categories.field_names()
        return {k: v for k, v in (self.__pydantic_extra__ or {}).items() if k not in fields}

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


# ---------------------------------------------------------------- sources


def _respell(shown: str, prefix_len: int, delimiter: str, index: int, segment: str) -> str:
    """``shown`` (a variable or file name) with its ``index``-th nested part replaced."""
    parts = shown[prefix_len:].split(delimiter)
    if index < 0:
        index += len(parts)
    parts[index] = segment.upper() if parts[index].isupper() else segment
    return shown[:prefix_len] + delimiter.join(parts)


def _scan_names(settings_cls: type[BaseSettings], source: Any, kind: str) -> None:
    """Refuse a nested ``CLOUDRIFT_*`` name whose section is misspelt; note every origin.

    Only nested names (with the delimiter) are surely meant as settings: other
    ``CLOUDRIFT_*`` variables (e.g. ``CLOUDRIFT_REDIS_SERVER`` for tooling) are left alone.
    """
    names: Iterable[str] = getattr(source, "env_vars", None) or ()
    prefix = str(getattr(source, "env_prefix", "") or "").lower()
    delimiter = str(getattr(source, "env_nested_delimiter", None) or "__")
    fields = sorted(name.lower() for name in settings_cls.model_fields)
    sections = sorted(
        name.lower()
        for name, info in settings_cls.model_fields.items()
        if info.annotation not in (str, bool, int, float)
    )
    origins = _origins.get()
    for name in names:
        low = name.lower()
        if not low.startswith(prefix):
            continue
        parts = tuple(low[len(prefix) :].split(delimiter))
        # Env var names are conventionally upper case; a secret file keeps its own name.
        shown = name if kind == "secrets file" else name.upper()
        if len(parts) > 1 and parts[0] not in fields:
            close = difflib.get_close_matches(parts[0], sections, n=1)
            hint = f"; did you mean {_respell(shown, len(prefix), delimiter, 0, close[0])}?"
            head = shown[: len(prefix)]
            spell = str.upper if head.isupper() else str.lower
            valid = ", ".join(f"{head}{spell(f)}{delimiter}" for f in sections)
            raise ConfigurationError(
                f"unknown cloudrift setting {shown} ({kind}){hint if close else ''}; "
                f"valid names start with one of: {valid}"
            )
        if origins is not None and parts[0] in fields:
            origins.setdefault(parts, f"{kind} {shown}")


class _DotEnvSettings(PydanticBaseSettingsSource):
    """pydantic-settings' dotenv source, keeping only cloudrift's settings.

    With ``extra="forbid"`` the plain dotenv source hands every other line of the file
    (``DATABASE_URL=...``) to the model as an unknown setting; a ``.env`` shared with the
    rest of the app must work, so only our fields pass, exactly as from the environment.
    """

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        if not getattr(self.inner, "env_vars", True):
            return {}  # no file named, or nothing in it: skip the field walk
        fields = self.settings_cls.model_fields
        return {k: v for k, v in self.inner().items() if k in fields}


class _YamlSettings(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, reading through :func:`load_yaml`.

    That adds ``${VAR}`` / ``${VAR:-default}`` interpolation and keeps unquoted scalars
    as written (:class:`~cloudrift.config._yaml.YamlLiteral`) so they are typed by the
    option they land in, not by YAML's guess.
    """

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return load_yaml(Path(str(file_path)))


def _yaml_source(
    settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource
) -> _YamlSettings:
    """The YAML file of ``from_yaml``, else ``$CLOUDRIFT_CONFIG`` (from the environment or
    the ``.env`` file), else ``yaml_file`` in the model config."""
    path = _yaml_path.get()
    dotenv_vars: Mapping[str, str | None] = getattr(dotenv, "env_vars", None) or {}
    named = os.environ.get(CONFIG_ENV) or next(
        (v for k, v in dotenv_vars.items() if k.upper() == CONFIG_ENV and v), None
    )
    if path is None and named:
        path = Path(named)
    if path is None:  # ``yaml_file`` in a subclass's model_config, if any
        return _YamlSettings(settings_cls)
    if not path.is_file():
        # pydantic-settings skips a missing file; a file the user named must exist.
        raise ConfigurationError(f"cannot read the cloudrift settings file {path}: no such file")
    return _YamlSettings(settings_cls, yaml_file=path)


def _paths(values: Mapping[str, Any], head: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every lowercased key path in nested keyword values."""
    for key, value in values.items():
        path = (*head, str(key).lower())
        yield path
        if isinstance(value, Mapping):
            yield from _paths(value, path)


def _describe(exc: ValidationError, title: str, origins: Mapping[tuple[str, ...], str]) -> str:
    """Each problem as ``path: message`` — never the input value (it may be a secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting; check the spelling"
            close = _close_field(err["loc"])
            if close:
                msg = f"unknown setting; did you mean {close}?"
        origin = origins.get(tuple(str(p).lower() for p in err["loc"]))
        if origin:
            msg += f" (set by {origin})"
        lines.append(f"  {path or '(root)'}: {msg}")
    return f"{title}:\n" + "\n".join(lines)


def _close_field(loc: tuple[int | str, ...]) -> str | None:
    """The valid name closest to the unknown key at ``loc`` (top level or in a section)."""
    if not loc:
        return None
    if len(loc) == 1:
        names = sorted(CloudriftSettings.model_fields)
    elif len(loc) == 2:
        names = sorted(SectionConfig.model_fields)
    else:
        return None
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return close[0] if close else None


# ---------------------------------------------------------------- provider options


# The two facts about a category that option typing needs, read from its registry entry.
def _provider_table(category: str) -> object:
    """The table (``{name: ProviderSpec}``) listing ``category``'s providers."""
    return categories.load(categories.get(category).provider_table)


def _consumed_options(category: str) -> frozenset[str]:
    """Settings keys of a backend that are not options of its provider: the options its
    factory takes itself (document ``driver``) and its fields (cache ``auth_method``)."""
    spec = categories.get(category)
    return spec.factory_options | frozenset(spec.fields)


def _provider_options(category: str, provider: str) -> ProviderOptions | None:
    """What ``provider`` of ``category`` accepts, or None when it cannot be resolved
    (unknown provider, extra not installed, unreadable annotations): the factory's own
    checks then report the problem when the backend is built.
    """
    try:
        table = _provider_table(category)
        if not isinstance(table, Mapping) or provider not in table:
            return None
        target = resolve_provider(category, provider, table)
        return provider_options(category, provider, target, _consumed_options(category) | {"self"})
    except Exception:  # best effort: the factory says what is wrong
        return None


def _type_options(category: str, config: BackendConfig) -> None:
    """Convert each option that arrived as text to the type its provider declares."""
    extra = config.__pydantic_extra__
    if not extra:
        return
    spec = _provider_options(category, config.provider)
    consumed = _consumed_options(category)
    for option, value in list(extra.items()):
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, (dict, list)):
            new = plain(raw)
        elif option in consumed:  # the factory's own keys (driver, auth_method) are names
            new = convert_text(option, raw, str, declared=True)
        else:
            declared = spec is not None and option in spec.types
            hint = spec.types.get(option) if spec is not None else None
            new = convert_text(option, raw, hint, declared=declared)
        if new is raw:
            continue
        extra[option] = (
            SecretStr(new) if is_secret_option(option, new) and isinstance(new, str) else new
        )


def _option_problems(
    category: str,
    path: str,
    provider: str,
    options: Mapping[str, Any],
    origin: Callable[[str], str | None],
) -> list[str]:
    """Each option whose value does not fit the provider's signature, each required
    option left out and each unknown option (with the closest valid name), as
    ``path.option: reason`` — the value itself is never quoted. ``origin(option)``
    names the env var / file that set an option, so a typo is shown as the user wrote it.
    """
    spec = _provider_options(category, provider)
    if spec is None:
        return []
    skip = _consumed_options(category)
    unknown = [] if spec.takes_any else sorted(set(options) - set(spec.types) - skip)
    valid = sorted(spec.types)
    guesses = {n: difflib.get_close_matches(n, valid, n=1) for n in unknown}

    def spelled(name: str, option: str) -> str:
        """``option`` written the way ``name`` was set (env var, file or key)."""
        where = origin(name)
        if where is None:
            return repr(option)
        kind, _, shown = where.rpartition(" ")
        delimiter = os.sep if kind == "secrets file" and os.sep in shown else "__"
        return _respell(shown, 0, delimiter, -1, option)

    problems = []
    for name in sorted(spec.required - set(options)):
        note = ""
        for typo, close in guesses.items():
            if close == [name]:
                note = f" ({spelled(typo, typo)} is set: did you mean {spelled(typo, name)}?)"
        problems.append(f"{path}.{name}: required option is missing{note}")
    for name, hint in spec.types.items():
        if name not in options or hint is None:
            continue
        try:
            adapter(hint).validate_python(options[name])
        except ValidationError as exc:
            reason = exc.errors(include_input=False, include_url=False)[0]["msg"]
            where = origin(name)
            problems.append(f"{path}.{name}: {reason}" + (f" (set by {where})" if where else ""))
        except Exception:  # an annotation pydantic cannot check: leave it to the provider
            continue
    if unknown:
        listed = []
        for name in unknown:
            close = guesses[name]
            if origin(name) is not None:
                guess = f"; did you mean {spelled(name, close[0])}?" if close else ""
                listed.append(f"{name!r} (set by {origin(name)}{guess})")
            else:
                listed.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        problems.append(
            f"{path}: unknown option(s) for the {provider!r} {category} provider: "
            f"{', '.join(listed)}; valid options: {', '.join(valid)}"
        )
    return problems


if TYPE_CHECKING:
    _Sections = BaseSettings
else:
    # One optional section per registered category (storage, queue, ...).
    _Sections = create_model(
        "_Sections",
        __base__=BaseSettings,
        **{spec.name: (SectionConfig | None, None) for spec in _SPECS},
    )


class TelemetryConfig(BaseModel):
    """``telemetry:``: OpenTelemetry spans and metrics (see docs/observability.md)."""

    model_config = ConfigDict(extra="forbid")

    #: False: backends built from these settings record no spans or metrics.
    enabled: bool = True


class CloudriftSettings(_Sections):
    """Every configured backend, from keywords, env vars (``CLOUDRIFT_*``), a ``.env``
    file, a secrets directory and YAML.

    Precedence, highest first: keywords > env vars > ``.env`` (``_env_file=``) > secret
    files (``_secrets_dir=``) > the YAML file, merged key by key. Nested names use ``__``
    in all of them: ``CLOUDRIFT_STORAGE__PROVIDER=s3``,
    ``CLOUDRIFT_STORAGE__BACKENDS__AVATARS__BUCKET=a``. Text values are converted to the
    type the provider declares for the option. Invalid settings raise ConfigurationError
    naming each path that is wrong.
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
    #: ``CLOUDRIFT_TELEMETRY__ENABLED=false`` turns telemetry off.
    telemetry: TelemetryConfig = TelemetryConfig()
    # One optional SectionConfig per category comes from the registry (_Sections).

    _categories: ClassVar[tuple[str, ...]] = CATEGORIES
    _origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        origins: dict[tuple[str, ...], str] = {}
        token = _origins.set(origins)
        try:
            super().__init__(**values)
            # A keyword beats every source: what it set came from the caller's code.
            for path in _paths(values):
                origins.pop(path, None)
        except ValidationError as exc:
            # Chaining would print pydantic's text, which quotes input values (secrets).
            message = _describe(exc, "invalid cloudrift settings", origins)
            raise ConfigurationError(message) from None
        except SettingsError as exc:
            # A source could not be read: e.g. CLOUDRIFT_STORAGE='{...' that is not JSON,
            # or a secrets_dir that is a file. Its text names the field, not the value.
            raise ConfigurationError(f"invalid cloudrift settings: {exc}") from exc
        finally:
            _origins.reset(token)
        self._origins = origins

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # pydantic-settings' own sources, in its own order, with the YAML file last. The
        # secrets source is the nested one so ``cloudrift_storage__password`` files (and
        # ``cloudrift_storage/password`` with ``secrets_nested_subdir``) fill sections.
        secrets: PydanticBaseSettingsSource = file_secret_settings
        if getattr(file_secret_settings, "secrets_dir", None) is not None:
            secrets = NestedSecretsSettingsSource(file_secret_settings)
        for source, kind in (
            (env_settings, "environment variable"),
            (dotenv_settings, ".env file entry"),
            (secrets, "secrets file"),
        ):
            _scan_names(settings_cls, source, kind)
        return (
            init_settings,
            env_settings,
            _DotEnvSettings(dotenv_settings),
            secrets,  # without a secrets_dir, pydantic-settings' own (empty) source
            _yaml_source(settings_cls, dotenv_settings),
        )

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
    def _convert_option_text(self) -> CloudriftSettings:
        # Text becomes the type the provider declares (``bucket: str`` stays "123").
        for category, _name, config in self.iter_backends():
            _type_options(category, config)
        return self

    @model_validator(mode="after")
    def _check_category_options(self) -> CloudriftSettings:
        owners = {f: [s.name for s in _SPECS if f in s.fields] for f in categories.field_names()}
        for category, name, config in self.iter_backends():
            own = categories.get(category).fields
            for field_name, takers in owners.items():
                value = (config.model_extra or {}).get(field_name)
                if value is None:
                    continue
                where = f"{category}.backends.{name}.{field_name}"
                if field_name not in own:
                    raise ValueError(
                        f"{where}: only {' / '.join(takers)} backends take {field_name}"
                    )
                if not isinstance(value, str):
                    raise ValueError(f"{where}: must be a string ({own[field_name]})")
        return self

    # ------------------------------------------------------------------ building

    def open_backend(self, category: str, name: str | None = None) -> Any:
        """Build one backend with its category's factory (the caller closes it).

        Errors from the factory are re-raised as ConfigurationError naming the path.
        """
        config = self.backend(category, name)
        key = name or self.default_name(category)
        factory = categories.load(categories.get(category).factory)
        options = config.factory_options()
        problems = _option_problems(
            category,
            f"{category}.backends.{key}",
            config.provider,
            options,
            lambda option: self._origin(category, str(key), option),
        )
        if problems:
            raise ConfigurationError("; ".join(problems))
        positional = [config.field(f) for f in categories.get(category).positional]
        try:
            backend = factory(config.provider, *positional, **options)
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
        # Spans name the backend as configured; settings can switch telemetry off.
        if isinstance(backend, AsyncBackend):  # documents: the driver's own monitoring
            backend.telemetry_name = key
            if not (self.telemetry.enabled and config.telemetry):
                backend.telemetry_enabled = False
        return backend

    def _origin(self, category: str, name: str, option: str) -> str | None:
        """The env var or file that set ``option`` of backend ``name`` (None: keyword/YAML)."""
        found = self._origins.get((category, "backends", name, option.lower()))
        if found is None and name == "default":  # a one-backend section's own keys
            found = self._origins.get((category, option.lower()))
        return found

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
