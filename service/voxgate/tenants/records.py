"""Client records and upstream key settings as the admin API and Redis hold them, pure.

A client has a name, limits (each optional) and one or more keys. A key is kept only
as the SHA-256 digest of its secret, with an id (to revoke it by) and an optional
expiry; several keys at once let a client rotate without downtime. Upstream (AssemblyAI)
key settings carry a budget and, for keys added at runtime, the secret itself (it is
needed to call upstream; it never leaves the gateway through the API or a log line).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
#: Keys one client may hold at once (a rotation needs two; a few spare is plenty).
MAX_KEYS_PER_CLIENT = 10
#: Client records Redis may hold, and upstream key settings (each replica reloads them
#: all at every change, on its event loop): a new one past these is refused (409).
MAX_CLIENTS = 10_000
MAX_UPSTREAM_KEYS = 100
#: What a new client secret starts with (tells it apart from a temporary token).
SECRET_PREFIX = "vxc_"
PERIODS = ("day", "month")
#: Largest limit or budget value accepted.
MAX_VALUE = 1_000_000
#: Longest a client key may live (``expires_in``, ``expires_at`` from now): 10 years.
MAX_EXPIRES_IN = 10 * 365 * 86400


class RecordError(ValueError):
    """A request body or a name that does not make a valid record (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A client's limits; None: no limit."""

    max_sessions: int | None = None
    sessions_per_minute: int | None = None
    audio_hours_per_day: float | None = None
    audio_hours_per_month: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "max_sessions": self.max_sessions,
            "sessions_per_minute": self.sessions_per_minute,
            "audio_hours_per_day": self.audio_hours_per_day,
            "audio_hours_per_month": self.audio_hours_per_month,
        }

    @property
    def any_audio(self) -> bool:
        return self.audio_hours_per_day is not None or self.audio_hours_per_month is not None


@dataclass(frozen=True, slots=True)
class ClientKeyEntry:
    """One key of a client: its id, the hex SHA-256 digest of its secret, times (unix s)."""

    id: str
    digest: str = field(repr=False)
    created_at: float
    expires_at: float | None = None

    def to_json(self, *, with_digest: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }
        if with_digest:
            out["digest"] = self.digest
        return out

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class ClientRecord:
    name: str
    limits: Limits = Limits()
    keys: tuple[ClientKeyEntry, ...] = ()
    updated_at: float = 0.0

    def to_json(self, *, with_digest: bool = True) -> dict[str, Any]:
        return {
            "name": self.name,
            "limits": self.limits.to_json(),
            "keys": [k.to_json(with_digest=with_digest) for k in self.keys],
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class UpstreamKeySettings:
    """What the operator set for one AssemblyAI key at runtime (``PUT /admin/keys/{alias}``)."""

    alias: str
    secret: str | None = field(default=None, repr=False)
    budget_usd: float | None = None
    period: str = "month"
    alert_share: float | None = None
    retired: bool = False

    def to_json(self, *, with_secret: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alias": self.alias,
            "budget_usd": self.budget_usd,
            "period": self.period,
            "alert_share": self.alert_share,
            "retired": self.retired,
        }
        if with_secret:
            out["secret"] = self.secret
        else:
            out["has_secret"] = self.secret is not None
        return out


# --------------------------------------------------------------------------- checks


def check_name(name: str, what: str = "client name") -> str:
    if not NAME_RE.match(name):
        raise RecordError(f"{what} must be 1-40 of A-Z a-z 0-9 _ . -")
    return name


def _finite(value: object) -> bool:
    """A JSON number that is finite (no inf from ``1e400``; an int of any size is
    compared, never converted, so ``10**400`` raises no OverflowError here)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _number(
    body: Mapping[str, Any], name: str, *, integer: bool, maximum: int = MAX_VALUE
) -> int | float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _finite(value):
        raise RecordError(f"{name} must be a number or null")
    if value <= 0 or value > maximum:
        raise RecordError(f"{name} must be more than 0 and at most {maximum} (null: no limit)")
    if integer:
        if int(value) != value:
            raise RecordError(f"{name} must be a whole number")
        return int(value)
    return float(value)


def parse_limits(body: object, current: Limits = Limits()) -> Limits:
    """``PUT /admin/clients/{name}``'s body: ``{"limits": {...}}`` or the limits alone.
    A limit left out keeps its current value; null removes it."""
    if not isinstance(body, dict):
        raise RecordError("the body must be a JSON object")
    raw = body.get("limits", body)
    if not isinstance(raw, dict):
        raise RecordError("limits must be a JSON object")
    known = set(Limits.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise RecordError(f"unknown limit {sorted(unknown)[0][:40]!r} (known: {sorted(known)})")
    changes: dict[str, Any] = {}
    for name in known & set(raw):
        changes[name] = _number(raw, name, integer=name in ("max_sessions", "sessions_per_minute"))
    return replace(current, **changes)


def parse_key_request(body: object, now: float) -> float | None:
    """``POST /admin/clients/{name}/keys``'s body: ``{"expires_in": seconds}`` or
    ``{"expires_at": unix seconds}``, both optional. Returns the expiry (None: none)."""
    if body is None or body == {}:
        return None
    if not isinstance(body, dict):
        raise RecordError("the body must be a JSON object")
    if body.get("expires_in") is not None:
        seconds = _number(body, "expires_in", integer=False, maximum=MAX_EXPIRES_IN)
        assert seconds is not None
        return now + seconds
    value = body.get("expires_at")
    if value is None:
        return None
    if not _finite(value) or not now < value <= now + MAX_EXPIRES_IN:
        raise RecordError(
            f"expires_at must be a unix time in the future, within {MAX_EXPIRES_IN} s"
        )
    return float(value)


def parse_upstream_key(
    alias: str, body: object, current: UpstreamKeySettings | None
) -> UpstreamKeySettings:
    """``PUT /admin/keys/{alias}``'s body: ``secret`` (to add a key), ``budget_usd``,
    ``period`` (day or month), ``alert_share`` (0-1). Left out: unchanged."""
    check_name(alias, "key alias")
    if not isinstance(body, dict):
        raise RecordError("the body must be a JSON object")
    known = {"secret", "budget_usd", "period", "alert_share"}
    unknown = set(body) - known
    if unknown:
        raise RecordError(f"unknown field {sorted(unknown)[0][:40]!r} (known: {sorted(known)})")
    settings = current or UpstreamKeySettings(alias)
    changes: dict[str, Any] = {"retired": False}
    if "secret" in body:
        secret = body["secret"]
        if not isinstance(secret, str) or not 8 <= len(secret.strip()) <= 512:
            raise RecordError("secret must be the AssemblyAI key (8-512 characters)")
        changes["secret"] = secret.strip()
    if "budget_usd" in body:
        changes["budget_usd"] = _number(body, "budget_usd", integer=False)
    if "period" in body:
        if body["period"] not in PERIODS:
            raise RecordError("period must be day or month")
        changes["period"] = body["period"]
    if "alert_share" in body:
        share = body["alert_share"]
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1
        ):
            raise RecordError("alert_share must be more than 0 and at most 1 (null: default)")
        changes["alert_share"] = None if share is None else float(share)
    return replace(settings, **changes)


# --------------------------------------------------------------------------- keys


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_key(
    record: ClientRecord, now: float, expires_at: float | None
) -> tuple[ClientRecord, ClientKeyEntry, str]:
    """A new key for ``record``: the updated record, the entry, and the secret (shown once)."""
    live = [k for k in record.keys if k.live(now)]
    if len(live) >= MAX_KEYS_PER_CLIENT:
        raise RecordError(f"a client holds at most {MAX_KEYS_PER_CLIENT} live keys")
    secret = new_secret()
    entry = ClientKeyEntry(
        id=secrets.token_hex(4), digest=digest_hex(secret), created_at=now, expires_at=expires_at
    )
    return replace(record, keys=(*live, entry), updated_at=now), entry, secret


# --------------------------------------------------------------------------- JSON


def client_from_json(body: Mapping[str, Any]) -> ClientRecord:
    """A record as stored in Redis (raises KeyError/ValueError/TypeError if malformed)."""
    limits = Limits(**{k: body["limits"].get(k) for k in Limits.__dataclass_fields__})
    keys = tuple(
        ClientKeyEntry(
            str(k["id"]),
            str(k["digest"]),
            float(k["created_at"]),
            None if k.get("expires_at") is None else float(k["expires_at"]),
        )
        for k in body["keys"]
    )
    return ClientRecord(check_name(str(body["name"])), limits, keys, float(body["updated_at"]))


def upstream_from_json(body: Mapping[str, Any]) -> UpstreamKeySettings:
    return UpstreamKeySettings(
        alias=check_name(str(body["alias"]), "key alias"),
        secret=body.get("secret"),
        budget_usd=None if body.get("budget_usd") is None else float(body["budget_usd"]),
        period=body.get("period", "month") if body.get("period") in PERIODS else "month",
        alert_share=None if body.get("alert_share") is None else float(body["alert_share"]),
        retired=bool(body.get("retired", False)),
    )
