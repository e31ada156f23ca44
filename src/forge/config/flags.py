"""One way to read booleans and environment names from the environment, everywhere."""

from __future__ import annotations

from enum import StrEnum

TRUTHY = frozenset({"1", "true", "yes", "on"})
FALSY = frozenset({"", "0", "false", "no", "off"})


def is_truthy(value: str | None) -> bool:
    """True for 1/true/yes/on (any case, surrounding spaces ignored); everything else is false."""
    return value is not None and value.strip().lower() in TRUTHY


def is_boolean(value: str) -> bool:
    """Whether `value` is one of the spellings `is_truthy` reads as true or as false."""
    return value.strip().lower() in TRUTHY | FALSY


class ForgeEnv(StrEnum):
    """Deployment environment; only dev relaxes the secret rules."""

    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"

    @property
    def is_dev(self) -> bool:
        return self is ForgeEnv.DEV


_ENV_ALIASES = {
    "dev": ForgeEnv.DEV,
    "development": ForgeEnv.DEV,
    "staging": ForgeEnv.STAGING,
    "prod": ForgeEnv.PROD,
    "production": ForgeEnv.PROD,
}

ALLOWED_ENV_VALUES = tuple(_ENV_ALIASES)


def parse_forge_env(value: str | None) -> ForgeEnv | None:
    """Map FORGE_ENV to an environment; unset means dev, an unknown value gives None."""
    if value is None or value.strip() == "":
        return ForgeEnv.DEV
    return _ENV_ALIASES.get(value.strip().lower())
