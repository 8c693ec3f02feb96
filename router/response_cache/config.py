"""The ``cache:`` block of the router's config.

    cache:
      enabled: true            # default on; a request opts out with "nemo_cache": false
      ttl_s: 600               # seconds an entry may be served
      max_entries: 10000
      max_bytes: 67108864      # 64 MiB across all entries (the actor's memory bound)
      max_entry_bytes: 1048576 # larger turns are not cached
      scope: key               # key: one API key never gets another's entries; global: shared
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CacheConfig"]


class CacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    ttl_s: float = Field(default=600.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=64 << 20, ge=1)
    max_entry_bytes: int = Field(default=1 << 20, ge=1)
    # "key" by default: a shared cache would tell one client, through a hit,
    # that someone else sent exactly this conversation.
    scope: Literal["key", "global"] = "key"

    @model_validator(mode="after")
    def _entry_fits(self) -> "CacheConfig":
        if self.max_entry_bytes > self.max_bytes:
            raise ValueError("max_entry_bytes must not exceed max_bytes")
        return self
