"""Pseudonymous shopper ids: what logs, exposure and audit records hold instead of the shop's user id.

A pseudonym is a keyed hash (HMAC-SHA256) of the id: stable for one key, so that the records of one
shopper join across requests and restarts, and useless without the key, which comes from the
environment of the process that starts the server (never from a file in the repository). With no key
set, the server makes a random one for its own lifetime and says so: its records still never hold a
raw id, but they no longer join across restarts and `hyperrec audit --user` cannot find them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets

from pydantic import Field

from hyperrec.config import StrictModel

logger = logging.getLogger(__name__)


class PrivacyConfig(StrictModel):
    id_key_env: str = Field(
        "HYPERREC_ID_KEY", min_length=1, description="environment variable with the key of the pseudonymous ids (`openssl rand -hex 32`)"
    )
    min_key_length: int = Field(16, ge=1, description="a shorter key is refused at start")


class Pseudonyms:
    """`of(user_id)`: the shopper's pseudonym under this key ("p_" and 32 hex digits)."""

    def __init__(self, key: bytes):
        self.key = key

    @classmethod
    def from_environment(cls, config: PrivacyConfig) -> Pseudonyms:
        key = os.environ.get(config.id_key_env, "").strip()
        if not key:
            logger.warning(
                "%s is not set: pseudonymous ids use a random key until the server stops (records will not join across restarts)",
                config.id_key_env,
            )
            return cls(secrets.token_bytes(32))
        if len(key) < config.min_key_length:
            raise ValueError(
                f"{config.id_key_env} is {len(key)} characters long; use at least {config.min_key_length} (`openssl rand -hex 32`)"
            )
        return cls(key.encode())

    def of(self, user_id: str) -> str:
        return "p_" + hmac.new(self.key, user_id.encode(), hashlib.sha256).hexdigest()[:32]
