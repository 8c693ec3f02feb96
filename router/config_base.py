"""The base of every config model: unknown keys are errors, values frozen."""

from pydantic import BaseModel, ConfigDict

__all__ = ["Frozen"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
