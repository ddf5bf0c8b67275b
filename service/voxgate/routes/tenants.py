"""The operator's API for clients, upstream key settings and usage (``voxgate clients``,
``voxgate usage`` read it). Same admin key as ``/admin/keys``. Every change is written
to Redis (every replica applies it within about a second), appended to the audit
stream and logged; a client secret is returned once, at its creation, and never kept.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxgate.protocol.jsonguard import loads_bounded
from voxgate.routes.admin import AdminRoutes
from voxgate.tenants import layout
from voxgate.tenants.limits import periods
from voxgate.tenants.metrics import OVERFLOW_LABEL
from voxgate.tenants.records import (
    MAX_CLIENTS,
    MAX_UPSTREAM_KEYS,
    PERIODS,
    ClientRecord,
    Limits,
    RecordError,
    add_key,
    check_name,
    client_from_json,
    parse_key_request,
    parse_limits,
    parse_upstream_key,
    upstream_from_json,
)
from voxgate.tenants.service import REDIS_FAILURES, Tenants, text

#: Largest admin request body read.
MAX_BODY = 16 * 1024
_ACTOR_RE = re.compile(r"[^A-Za-z0-9_.@:-]")
_DATE_RE = {"day": re.compile(r"^\d{4}-\d{2}-\d{2}$"), "month": re.compile(r"^\d{4}-\d{2}$")}

Handler = Callable[[Request], Awaitable[Response]]


class BodyTooLarge(RecordError):
    """An admin request body over MAX_BODY (HTTP 413)."""


class Full(RecordError):
    """A new record past MAX_CLIENTS or MAX_UPSTREAM_KEYS (HTTP 409)."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def _client_name(request: Request) -> str:
    """A client name for a new or changed record: not the metrics' overflow label."""
    name = check_name(request.path_params["name"])
    if name == OVERFLOW_LABEL:
        raise RecordError(f"{OVERFLOW_LABEL!r} is reserved (the metrics' overflow label)")
    return name


class TenantRoutes:
    def __init__(self, admin: AdminRoutes, tenants: Tenants) -> None:
        self._admin = admin
        self._tenants = tenants

    def guarded(self, handler: Handler) -> Handler:
        """The admin key checked, Redis required, its failures a 503, bad input a 400."""

        async def route(request: Request) -> Response:
            if (refused := self._admin.refusal(request)) is not None:
                return refused
            if self._tenants.redis is None:
                return _error(409, "clients and usage are kept in Redis: set VOXGATE_REDIS_URL")
            try:
                return await handler(request)
            except BodyTooLarge as big:
                return _error(413, str(big))
            except Full as full:
                return _error(409, str(full))
            except RecordError as bad:
                return _error(400, str(bad))
            except REDIS_FAILURES as exc:
                return _error(503, f"Redis unreachable: {type(exc).__name__}")

        return route

    # ------------------------------------------------------------------ helpers

    @staticmethod
    async def _body(request: Request) -> object:
        """The JSON body, read as it arrives and no further than MAX_BODY (413; the
        edge caps every body at VOXGATE_MAX_BODY_BYTES, chunked ones too, and this
        route's own bound is tighter), nested at most MAX_JSON_DEPTH deep (400)."""
        length = request.headers.get("content-length") or "0"
        if not length.isdigit() or int(length[:20]) > MAX_BODY:
            raise BodyTooLarge(f"the body is over {MAX_BODY} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise BodyTooLarge(f"the body is over {MAX_BODY} bytes")
        if not raw.strip():
            return {}
        try:
            return loads_bounded(bytes(raw))
        except ValueError:
            raise RecordError("the body is not JSON (or nested too deep)") from None

    @staticmethod
    def _who(request: Request) -> str:
        actor = _ACTOR_RE.sub("", request.headers.get("x-voxgate-actor", ""))[:60] or "admin"
        host = request.client.host if request.client is not None else "?"
        return f"{actor}@{host}"

    async def _client_view(self, record: ClientRecord | None, name: str) -> dict[str, Any]:
        now = time.time()
        env = name in {k.name for k in self._tenants.settings.client_keys}
        view: dict[str, Any] = (
            record.to_json(with_digest=False)
            if record is not None
            else {"name": name, "limits": self._new_record(name).limits.to_json(), "keys": []}
        )
        for key in view["keys"]:
            key["expired"] = key["expires_at"] is not None and key["expires_at"] <= now
        view["source"] = "both" if env and record else "env" if env else "redis"
        # What this replica applies now (it reloads within about a second of a change).
        view["limits_in_force"] = self._tenants.limits_of(name).to_json()
        view["active_sessions"] = await self._tenants.active_sessions(name)
        return view

    def _new_record(self, name: str) -> ClientRecord:
        """A client's first record in Redis starts from its VOXGATE_CLIENT_LIMITS (a
        record replaces them once it exists: a key added to an env client, or one
        limit set, must not drop the others)."""
        return ClientRecord(name, self._tenants.env_limits.get(name, Limits()))

    async def _room(self, hash_name: str, field_name: str, cap: int, what: str) -> None:
        """Raise Full when ``field_name`` would be a new entry of a hash holding ``cap``
        (checked before the change: concurrent creations may pass it by a few)."""
        redis = self._tenants.redis
        assert redis is not None
        if not await redis.hexists(hash_name, field_name) and await redis.hlen(hash_name) >= cap:
            raise Full(f"at most {cap} {what}: delete one first")

    async def _read_client(self, name: str) -> ClientRecord | None:
        assert self._tenants.redis is not None
        raw = await self._tenants.redis.hget(layout.CLIENTS, name)
        return client_from_json(json.loads(raw)) if raw else None

    # ------------------------------------------------------------------ clients

    async def list_clients(self, request: Request) -> Response:
        assert self._tenants.redis is not None
        raw = await self._tenants.redis.hgetall(layout.CLIENTS)
        records = {text(n): client_from_json(json.loads(body)) for n, body in raw.items()}
        names = sorted(set(records) | {k.name for k in self._tenants.settings.client_keys})
        return JSONResponse(
            {"clients": [await self._client_view(records.get(n), n) for n in names]}
        )

    async def get_client(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        record = await self._read_client(name)
        if record is None and name not in {k.name for k in self._tenants.settings.client_keys}:
            return _error(404, f"no client {name!r}")
        return JSONResponse(await self._client_view(record, name))

    async def put_client(self, request: Request) -> Response:
        name = _client_name(request)
        body = await self._body(request)
        await self._room(layout.CLIENTS, name, MAX_CLIENTS, "client records")
        created = False

        def change(current: str | None) -> str:
            nonlocal created
            record = client_from_json(json.loads(current)) if current else None
            created = record is None
            record = record or self._new_record(name)
            limits = parse_limits(body, record.limits)
            updated = ClientRecord(name, limits, record.keys, time.time())
            return json.dumps(updated.to_json())

        new = await self._tenants.update(layout.CLIENTS, name, change)
        assert new is not None
        record = client_from_json(json.loads(new))
        await self._tenants.audit(
            self._who(request),
            "client_created" if created else "client_updated",
            name,
            {"limits": record.limits.to_json()},
        )
        return JSONResponse(await self._client_view(record, name), 201 if created else 200)

    async def delete_client(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        existed = False

        def change(current: str | None) -> None:
            nonlocal existed
            existed = current is not None

        await self._tenants.update(layout.CLIENTS, name, change)
        if not existed:
            return _error(404, f"no client {name!r} in Redis")
        await self._tenants.audit(self._who(request), "client_deleted", name, {})
        env = name in {k.name for k in self._tenants.settings.client_keys}
        return JSONResponse({"deleted": name, "env_keys_remain": env})

    async def add_client_key(self, request: Request) -> Response:
        name = _client_name(request)
        body = await self._body(request)
        now = time.time()
        expires_at = parse_key_request(body, now)
        env = name in {k.name for k in self._tenants.settings.client_keys}
        await self._room(layout.CLIENTS, name, MAX_CLIENTS, "client records")
        made: dict[str, Any] = {}

        def change(current: str | None) -> str | None:
            if current is None and not env:
                return None
            record = client_from_json(json.loads(current)) if current else self._new_record(name)
            updated, entry, secret = add_key(record, now, expires_at)
            made.update(entry=entry, secret=secret)
            return json.dumps(updated.to_json())

        await self._tenants.update(layout.CLIENTS, name, change)
        if not made:
            return _error(404, f"no client {name!r}: create it first (PUT /admin/clients/{name})")
        entry = made["entry"]
        await self._tenants.audit(
            self._who(request),
            "client_key_created",
            name,
            {"key_id": entry.id, "expires_at": entry.expires_at},
        )
        return JSONResponse(
            {
                "client": name,
                "key_id": entry.id,
                "secret": made["secret"],
                "expires_at": entry.expires_at,
                "note": "the secret is shown once; only its SHA-256 digest is kept",
            },
            201,
        )

    async def delete_client_key(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        key_id = request.path_params["key_id"][:40]
        found = False

        def change(current: str | None) -> str | None:
            nonlocal found
            if current is None:
                return None
            record = client_from_json(json.loads(current))
            keys = tuple(k for k in record.keys if k.id != key_id)
            found = len(keys) != len(record.keys)
            updated = ClientRecord(name, record.limits, keys, time.time())
            return json.dumps(updated.to_json())

        await self._tenants.update(layout.CLIENTS, name, change)
        if not found:
            return _error(404, f"client {name!r} has no key {key_id!r}")
        await self._tenants.audit(
            self._who(request), "client_key_deleted", name, {"key_id": key_id}
        )
        return JSONResponse({"client": name, "deleted_key": key_id})

    # ------------------------------------------------------------------ upstream keys

    async def put_key(self, request: Request) -> Response:
        alias = check_name(request.path_params["alias"], "key alias")
        body = await self._body(request)
        env = {k.alias for k in self._tenants.settings.upstream_keys}
        if isinstance(body, dict) and "secret" in body and alias in env:
            return _error(
                409, f"{alias!r} is set in VOXGATE_UPSTREAM_KEYS: change its secret there"
            )
        await self._room(layout.UPSTREAM_KEYS, alias, MAX_UPSTREAM_KEYS, "upstream key settings")
        result: dict[str, Any] = {}

        def change(current: str | None) -> str:
            settings = upstream_from_json(json.loads(current)) if current else None
            updated = parse_upstream_key(alias, body, settings)
            if updated.secret is None and alias not in env:
                raise RecordError(f"{alias!r} is a new key: give its secret")
            result["settings"], result["created"] = updated, settings is None
            return json.dumps(updated.to_json(with_secret=True))

        await self._tenants.update(layout.UPSTREAM_KEYS, alias, change)
        settings = result["settings"]
        await self._tenants.audit(
            self._who(request),
            "key_added" if result["created"] and alias not in env else "key_updated",
            alias,
            settings.to_json(with_secret=False),
        )
        return JSONResponse(settings.to_json(with_secret=False), 201 if result["created"] else 200)

    async def delete_key(self, request: Request) -> Response:
        alias = check_name(request.path_params["alias"], "key alias")
        known = {r.alias for r in self._tenants.pool.records()}
        known |= set(self._tenants.snapshot.upstream)
        if alias not in known:
            return _error(404, f"no key {alias!r}")

        def change(current: str | None) -> str:
            settings = upstream_from_json(json.loads(current)) if current else None
            retired = replace(parse_upstream_key(alias, {}, settings), retired=True)
            return json.dumps(retired.to_json(with_secret=True))

        await self._tenants.update(layout.UPSTREAM_KEYS, alias, change)
        await self._tenants.audit(self._who(request), "key_retired", alias, {})
        return JSONResponse({"key": alias, "state": "retired"})

    # ------------------------------------------------------------------ usage, audit

    async def usage(self, request: Request) -> Response:
        by = request.query_params.get("by", "client")
        period = request.query_params.get("period", "day")
        if by not in ("client", "key"):
            raise RecordError("by must be client or key")
        if period not in PERIODS:
            raise RecordError("period must be day or month")
        date = request.query_params.get("date") or periods(time.time())[period]
        if not _DATE_RE[period].match(date):
            raise RecordError("date must be YYYY-MM-DD (day) or YYYY-MM (month)")
        rows = await self._tenants.usage_report(by, period, date)
        return JSONResponse({"by": by, "period": period, "date": date, "rows": rows})

    async def audit(self, request: Request) -> Response:
        assert self._tenants.redis is not None
        try:
            count = min(max(int(request.query_params.get("count", "50")), 1), 1000)
        except ValueError:
            raise RecordError("count must be a number") from None
        entries = await self._tenants.redis.xrevrange(layout.AUDIT, count=count)
        out = [
            {"id": text(entry_id), **{text(k): text(v) for k, v in (fields or {}).items()}}
            for entry_id, fields in entries or []
        ]
        return JSONResponse({"entries": out})
