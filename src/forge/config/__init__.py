"""Configuration: FORGE_ENV rules, secrets and HMAC keyrings shared by every service."""

from forge.config.flags import ForgeEnv, is_truthy, parse_forge_env
from forge.config.keyring import HmacKeyring, derive_kid
from forge.config.settings import ConfigError, Settings, load_settings

__all__ = [
    "ConfigError",
    "ForgeEnv",
    "HmacKeyring",
    "Settings",
    "derive_kid",
    "is_truthy",
    "load_settings",
    "parse_forge_env",
]
