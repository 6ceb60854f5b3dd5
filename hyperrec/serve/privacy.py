"""Consent by purpose, and pseudonymous shopper ids: what logs, exposure and audit records hold instead of the shop's user id.

Consent: a shopper's `consent` events (hyperrec/data/events.py) say, per purpose, granted or withdrawn; the
online store keeps the latest per purpose by event time for the user and for the session, and a purpose
with no record follows `ConsentConfig`. `ConsentConfig.snapshot` is what a request reads (`ConsentSnapshot`).

A pseudonym is a keyed hash (HMAC-SHA256) of the id: stable for one key, so that the records of one
shopper join across requests and restarts, and useless without the key, which comes from the
environment of the process that starts the server (never from a file in the repository). With no key
set, the server makes a random one for its own lifetime and says so: its records still never hold a
raw id, but they no longer join across restarts and `hyperrec audit --user` cannot find them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets

from pydantic import BaseModel, ConfigDict, Field

from hyperrec.bundle.user_state import ConsentRecord, latest_consent
from hyperrec.config import StrictModel
from hyperrec.data.events import CONSENT_PURPOSES, ConsentPurpose

logger = logging.getLogger(__name__)


class ConsentSnapshot(BaseModel):
    """What a shopper consents to for one answer; audit and exposure records leave out a shopper without `analytics`."""

    model_config = ConfigDict(frozen=True)

    personalization: bool = Field(description="their own behaviour may shape their answers (and is stored for it)")
    analytics: bool = Field(description="they may be in experiments and in the exposure and audit logs")
    email: bool = Field(description="they may be on email lists")
    defaulted: tuple[ConsentPurpose, ...] = Field((), description="purposes with no consent record: the configured default")
    known: bool = Field(True, description="false when the online store could not be read: every purpose counts as withdrawn")


NO_CONSENT = ConsentSnapshot(personalization=False, analytics=False, email=False, known=False)


class ConsentConfig(StrictModel):
    """The default of each purpose for a shopper with no consent record for it."""

    personalization: bool = Field(
        True,
        description="on: recommendations from the shopper's own behaviour on the shop are the service they came for, "
        "and withdrawing it takes effect on the next answer; set false where the shop's law asks for opt-in",
    )
    analytics: bool = Field(
        True,
        description="on: experiments and exposure logs hold pseudonymous ids only (never the user id); set false for opt-in",
    )
    email: bool = Field(False, description="off: marketing email needs the shopper's opt-in (ePrivacy, CAN-SPAM's spirit)")

    def snapshot(self, *records: dict[str, ConsentRecord]) -> ConsentSnapshot:
        """The consent of a shopper whose subjects (user, session) hold these records: the newest per purpose, else the default."""
        latest = latest_consent(*records)
        given = {p: latest[p][1] if p in latest else getattr(self, p) for p in CONSENT_PURPOSES}
        return ConsentSnapshot(**given, defaulted=tuple(p for p in CONSENT_PURPOSES if p not in latest))


class PrivacyConfig(StrictModel):
    consent: ConsentConfig = ConsentConfig()
    id_key_env: str = Field(
        "HYPERREC_ID_KEY", min_length=1, description="environment variable with the key of the pseudonymous ids (`openssl rand -hex 32`)"
    )
    min_key_length: int = Field(16, ge=1, description="a shorter key is refused at start")


@functools.cache
def _process_key(env: str) -> bytes:
    """With no key in the environment: one random key for this process's lifetime, said once (a benchmark or a
    simulation starts several flows in one process, and their records then join)."""
    logger.warning("%s is not set: pseudonymous ids use a random key until the server stops (records will not join across restarts)", env)
    return secrets.token_bytes(32)


class Pseudonyms:
    """`of(user_id)`: the shopper's pseudonym under this key ("p_" and 32 hex digits)."""

    def __init__(self, key: bytes):
        self.key = key

    @classmethod
    def from_environment(cls, config: PrivacyConfig) -> Pseudonyms:
        key = os.environ.get(config.id_key_env, "").strip()
        if not key:
            return cls(_process_key(config.id_key_env))
        if len(key) < config.min_key_length:
            raise ValueError(
                f"{config.id_key_env} is {len(key)} characters long; use at least {config.min_key_length} (`openssl rand -hex 32`)"
            )
        return cls(key.encode())

    def of(self, user_id: str) -> str:
        return "p_" + hmac.new(self.key, user_id.encode(), hashlib.sha256).hexdigest()[:32]
