"""The catalog's schema and loader: ``models.yaml`` in, a frozen ``Catalog`` out.

Unknown keys are errors, as in the router's config; a bad catalog fails
with ``ConfigError`` naming the file and each field path.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from router.errors import ConfigError, ConfigIssue
from router.tags import TAG_PATTERN

__all__ = ["Price", "CatalogModel", "Catalog", "load_catalog", "CATALOG_NAME_PATTERN"]

CATALOG_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:/-]*$"
"""Catalog names: what clients put in ``model`` (``gpt-4o``, ``groq/llama-3.1-8b-instant``)."""

_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Frozen):
    """List price in USD per million tokens (``mtok``): prompt and completion,
    and ``cached_input_per_mtok`` for prompt tokens the provider served from
    its prompt cache (None: not listed; cached tokens then cost full price)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class CatalogModel(_Frozen):
    """One model one host serves.

    ``host`` is who serves it (``openai``, ``groq``, ``self-hosted``...);
    ``provider`` is the codec that speaks its API. ``base_url`` is fixed, or
    ``base_url_env`` names the variable that holds it (self-hosted). The entry
    is available when its ``api_key_env`` is set in the environment (or,
    with ``requires_api_key: false``, when its ``base_url_env`` is).
    Token counts are tokens; ``price`` is per million tokens.
    """

    host: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    provider: Literal["openai", "anthropic", "gemini"]
    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    base_url_env: str | None = Field(default=None, pattern=_ENV_NAME)
    api_key_env: str | None = Field(default=None, pattern=_ENV_NAME)
    requires_api_key: bool = True
    context_window: int = Field(gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    price: Price
    tags: tuple[Annotated[str, StringConstraints(pattern=TAG_PATTERN)], ...] = ()

    @model_validator(mode="after")
    def _one_base_url(self) -> "CatalogModel":
        if (self.base_url is None) == (self.base_url_env is None):
            raise ValueError("give exactly one of base_url and base_url_env")
        return self

    @model_validator(mode="after")
    def _gated_by_environment(self) -> "CatalogModel":
        # An entry no variable switches on would be served everywhere, keyless.
        if self.requires_api_key and self.api_key_env is None:
            raise ValueError("api_key_env is required unless requires_api_key is false")
        if not self.requires_api_key and self.base_url_env is None:
            raise ValueError("requires_api_key: false needs base_url_env, so the environment still switches the entry on")
        return self

    def required_env(self) -> tuple[str, ...]:
        """The variables that must be set (non-empty) for the entry to be served."""
        names = [self.api_key_env] if self.requires_api_key else []
        if self.base_url_env:
            names.append(self.base_url_env)
        return tuple(n for n in names if n)


class Catalog(_Frozen):
    """Every model the router knows, by the name clients ask for.

    ``source`` and ``as_of`` say where the prices came from and when;
    ``notice`` is the warning to show next to them.
    """

    source: str = Field(min_length=1)
    as_of: date
    notice: str = Field(min_length=1)
    models: dict[Annotated[str, StringConstraints(pattern=CATALOG_NAME_PATTERN)], CatalogModel] = Field(min_length=1)

    def get(self, name: str) -> CatalogModel | None:
        """The entry named ``name``, or None (like ``Mapping.get``)."""
        return self.models.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    def find_upstream(self, provider: str, model: str, base_url: str | None = None) -> CatalogModel | None:
        """The entry for an upstream model id, e.g. to price a configured endpoint.

        Several hosts may serve the same id: the one whose ``base_url`` matches
        wins; with no match the lookup succeeds only if it is unambiguous.
        """
        matches = [m for m in self.models.values() if m.provider == provider and m.model == model]
        if base_url is not None:
            wanted = base_url.rstrip("/")
            same_host = [m for m in matches if m.base_url and m.base_url.rstrip("/") == wanted]
            if same_host:
                matches = same_host
        return matches[0] if len(matches) == 1 else None


def _default_path() -> Path:
    return Path(str(resources.files("router.catalog").joinpath("models.yaml")))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog (default: the shipped ``models.yaml``)."""
    path = Path(path) if path is not None else _default_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("<file>", f"cannot read: {exc.strerror}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [ConfigIssue("<file>", f"not valid YAML: {exc}")]) from exc
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        issues = [ConfigIssue(".".join(str(p) for p in e["loc"]) or "<root>", e["msg"]) for e in exc.errors()]
        raise ConfigError(str(path), issues) from exc
