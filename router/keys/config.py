"""The ``auth:`` block of the router's config: client keys by hash, and the
admin key's hash. Frozen, unknown keys rejected, like the rest of the config.

    auth:
      keys:
        - name: voice-app                 # the key id in the turn log
          hash: sha256:9f86d0...          # `nemo-router hash-key`
          models: [voice-fast, "gpt-4o*"] # groups / catalog names, globs; default ["*"]
          rate_limit_per_min: 600         # turns per minute, all replicas; default none
          credit_usd: 5.0                 # a balance turns draw down; never resets; default none
          budget_usd: 100.0               # spend per period, reset at its start (UTC); default none
          period: month                   # day | month; the budget's period; default month
      admin_key_hash: sha256:...          # guards /v1/routing, reload; default none

With no ``keys`` the router is open (every turn is let in as ``anonymous``);
the ingress should say so at start-up.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router.keys.hashing import hash_key, parse_key_hash

__all__ = ["ApiKeyConfig", "AuthConfig", "LOCAL_KEY", "LOCAL_ADMIN_KEY", "local_auth_config"]

LOCAL_KEY = "sk-nemo-local-dev"
"""The documented key of the embedded default (``nemo-router run``). Local use only."""
LOCAL_ADMIN_KEY = "sk-nemo-local-admin"
"""The documented admin key of the embedded default. Local use only."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeyConfig(_Frozen):
    """One client key. ``models``: group or catalog names it may use, as
    ``fnmatch`` patterns (``*`` for all). ``rate_limit_per_min``: turns per
    sliding 60 s window across every ingress replica, None for no limit.

    Spend (USD, charged with each turn's ``cost_usd``; ``router.keys.ledger``):
    ``credit_usd`` a balance that turns draw down and admin top-ups add to,
    never reset; ``budget_usd`` what the key may spend per ``period`` (``day``
    or ``month``, starting at 00:00 UTC; ``month`` if not given). None: no
    such limit. ``period`` without ``budget_usd`` is an error."""

    name: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    hash: str
    models: tuple[str, ...] = Field(default=("*",), min_length=1)
    rate_limit_per_min: int | None = Field(default=None, ge=1)
    credit_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    period: Literal["day", "month"] | None = None

    @model_validator(mode="after")
    def _period_needs_budget(self) -> "ApiKeyConfig":
        if self.period is not None and self.budget_usd is None:
            raise ValueError("period is the budget's period: set budget_usd too")
        return self

    @property
    def budget_period(self) -> Literal["day", "month"]:
        return self.period or "month"

    @property
    def metered(self) -> bool:
        """Whether turns of this key are charged (it has a credit or a budget)."""
        return self.credit_usd is not None or self.budget_usd is not None

    @field_validator("hash")
    @classmethod
    def _normalised_hash(cls, value: str) -> str:
        return parse_key_hash(value)


class AuthConfig(_Frozen):
    keys: tuple[ApiKeyConfig, ...] = ()
    admin_key_hash: str | None = None
    # ``GET /v1/models`` needs a client key like every other ``/v1`` route;
    # an open deployment may list its models to anyone.
    open_model_list: bool = False

    @field_validator("admin_key_hash")
    @classmethod
    def _normalised_admin_hash(cls, value: str | None) -> str | None:
        return None if value is None else parse_key_hash(value)

    @model_validator(mode="after")
    def _distinct(self) -> "AuthConfig":
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError(f"key names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        hashes = [k.hash for k in self.keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two keys have the same hash")
        if self.admin_key_hash is not None and self.admin_key_hash in hashes:
            raise ValueError("the admin key must not also be a client key")
        return self


def local_auth_config() -> AuthConfig:
    """The embedded default's auth: ``LOCAL_KEY`` for every model, no rate
    limit, and ``LOCAL_ADMIN_KEY`` for the admin routes."""
    return AuthConfig(
        keys=(ApiKeyConfig(name="local", hash=hash_key(LOCAL_KEY)),),
        admin_key_hash=hash_key(LOCAL_ADMIN_KEY),
    )
