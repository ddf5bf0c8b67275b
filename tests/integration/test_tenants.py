"""Tenants (issue 17) against a real redis-server and two real gateway processes:
limits set on one replica hold on the other, client keys made and deleted at runtime,
a rotation's overlap, an audio budget ending a running session, the spend guard, and
usage that matches the audio streamed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from voxgate.bench.procs import RedisServer, Server
from voxgate.tenants import layout

from tests.support import audio
from tests.support.admin import admin
from tests.support.gateway import ADMIN_KEY, CLIENT_KEY, GatewayFactory, admin_keys, metric
from tests.support.wsclient import WAIT, Outcome, collect, open_client, run, session

T = TypeVar("T")


def pair(factory: GatewayFactory, redis_server: RedisServer, **env: str) -> tuple[Server, Server]:
    common = {"VOXGATE_REDIS_URL": redis_server.url, "VOXGATE_ADMIN_KEY": ADMIN_KEY, **env}
    return factory("main=good-key", **common), factory("main=good-key", **common)


def eventually(check: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def put_limits(gw: Server, client: str, **limits: Any) -> None:
    status, body = admin(gw, "PUT", f"/admin/clients/{client}", {"limits": limits})
    assert status in (200, 201), body


def in_force(client: str, *gateways: Server, **limits: Any) -> None:
    """Until every replica applies ``limits`` (a limit left out: none) to ``client``."""
    for gw in gateways:

        def applied(gw: Server = gw) -> bool:
            status, body = admin(gw, "GET", f"/admin/clients/{client}")
            assert status == 200, body
            got = {k: v for k, v in body["limits_in_force"].items() if v is not None}
            return bool(got == limits)

        eventually(applied, f"{gw.url} applies {limits} to {client}")


def refused_with(gw: Server, code: int, key: str = CLIENT_KEY) -> Outcome | None:
    """A session that is refused with ``code`` (its Outcome), else None."""
    out = run(session(gw.url, audio.speech(1), key=key))
    return out if out.code == code else None


def test_a_limit_set_on_one_replica_holds_on_the_other(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """max_sessions=1 set through replica A: a session held on A makes B refuse the
    client's next one with an Error frame and 3009 naming the limit (no upstream session
    opened for it), and B admits again once A's session ends. sessions_per_minute=2:
    one start on each replica, the third (on A) is refused."""
    a, b = pair(gateway_factory, redis_server)
    put_limits(a, "tester", max_sessions=1)

    async def held_then_refused() -> tuple[Outcome, Outcome]:
        held = await open_client(a.url)
        assert json.loads(await asyncio.wait_for(held.recv(), WAIT))["type"] == "Begin"
        deadline = time.monotonic() + 15
        while True:  # B applies the new limit within a second or two
            out = await session(b.url, audio.speech(1))
            if out.code == 3009 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await held.send(json.dumps({"type": "Terminate"}))
        return out, await collect(held, Outcome())

    refused, first = run(held_then_refused())
    assert first.code == 1000, first
    assert refused.code == 3009, refused
    assert "max_sessions" in refused.reason and "tester" in refused.reason, refused
    errors = refused.of_type("Error")
    assert errors and errors[0]["error_code"] == 3009, refused.messages
    assert not refused.of_type("Begin"), "a refused session must not reach upstream"
    assert (
        metric(b, "voxgate_client_limit_refusals_total", client="tester", limit="max_sessions") >= 1
    )
    # A's session ended: its lease is freed at A's next sync, B admits again.
    eventually(lambda: run(session(b.url, audio.speech(1))).code == 1000, "B admits again")

    put_limits(a, "tester", max_sessions=None, sessions_per_minute=2)
    in_force("tester", a, b, sessions_per_minute=2)
    assert run(session(a.url, audio.speech(1))).code == 1000
    assert run(session(b.url, audio.speech(1))).code == 1000
    third = run(session(a.url, audio.speech(1)))
    assert third.code == 3009 and "sessions_per_minute" in third.reason, third


def test_client_keys_made_at_runtime_work_on_both_replicas_and_rotate_without_downtime(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """A client created and given a key through replica A works on B within seconds; a
    second key overlaps with the first (both work); the first deleted through B is
    refused on A while the second goes on. The secret is shown once: not in the
    client's record, not in Redis, not in the audit stream, not in a log line."""
    a, b = pair(gateway_factory, redis_server)
    status, created = admin(a, "PUT", "/admin/clients/svc", {"max_sessions": 5})
    assert status == 201, created
    status, first = admin(a, "POST", "/admin/clients/svc/keys", {})
    assert status == 201, first
    old = first["secret"]
    eventually(
        lambda: run(session(b.url, audio.speech(1), key=old)).code == 1000, "new key works on B"
    )
    assert run(session(a.url, audio.speech(1), key=old)).code == 1000

    status, second = admin(a, "POST", "/admin/clients/svc/keys", {"expires_in": 3600})
    assert status == 201, second
    new = second["secret"]
    eventually(lambda: run(session(b.url, audio.speech(1), key=new)).code == 1000, "2nd key on B")
    assert run(session(b.url, audio.speech(1), key=old)).code == 1000, "both keys overlap"
    # A temporary token minted with a key made at runtime opens a session too.
    mint = urllib.request.Request(
        a.http_url + "/v3/token?expires_in_seconds=60", headers={"Authorization": new}
    )
    with urllib.request.urlopen(mint, timeout=10) as answer:
        token = json.loads(answer.read())["token"]
    assert run(session(a.url, audio.speech(1), key=token)).code == 1000

    status, gone = admin(b, "DELETE", f"/admin/clients/svc/keys/{first['key_id']}")
    assert status == 200, gone
    refused = eventually(lambda: refused_with(a, 1008, key=old), "deleted key refused on A")
    assert "invalid client key" in refused.reason, refused
    assert run(session(a.url, audio.speech(1), key=new)).code == 1000

    status, listed = admin(a, "GET", "/admin/clients")
    assert status == 200
    svc = {c["name"]: c for c in listed["clients"]}["svc"]
    assert [k["id"] for k in svc["keys"]] == [second["key_id"]], svc
    dump = json.dumps(listed)
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    stored = json.dumps(r.hgetall(layout.CLIENTS))
    audit = r.xrange(layout.AUDIT)
    actions = [fields["action"] for _, fields in audit]
    assert actions == [
        "client_created",
        "client_key_created",
        "client_key_created",
        "client_key_deleted",
    ], actions
    for secret in (old, new):
        assert secret not in dump and secret not in stored and secret not in json.dumps(audit)
        assert secret not in a.stderr() and secret not in b.stderr()


def test_an_audio_budget_ends_a_running_session_cleanly_at_the_boundary(
    gateway_factory: GatewayFactory, redis_server: RedisServer, sandbox: Server
) -> None:
    """A client with 3 s of audio per day streams 6 s: the gateway sends no audio past
    3 s upstream, ends upstream with Terminate, and the client gets its final turns,
    the Termination, then 1008 naming audio_hours_per_day. Its next session is refused
    at once (1008, before any upstream session)."""
    a, _ = pair(gateway_factory, redis_server)
    put_limits(a, "tester", audio_hours_per_day=3 / 3600)
    in_force("tester", a, audio_hours_per_day=3 / 3600)
    out = run(session(a.url, audio.speech(4, pause=0.7)))  # then Terminate
    assert out.code == 1008, out
    assert "audio_hours_per_day" in out.reason, out
    kinds = [m["type"] for m in out.messages]
    assert kinds[0] == "Begin" and kinds[-1] == "Termination", kinds
    assert out.finals, "the final turns of the audio sent reach the client"
    assert out.messages[-1]["audio_duration_seconds"] <= 3.0 + 0.051, out.messages[-1]
    assert out.messages[-1]["audio_duration_seconds"] >= 2.9, out.messages[-1]

    # Usage counts the audio sent upstream (at most the 3 s), not the 4.x s received.
    def used() -> dict[str, Any] | None:
        status, body = admin(a, "GET", "/admin/usage?by=client&period=day")
        assert status == 200, body
        rows: list[dict[str, Any]] = body["rows"]
        return rows[0] if rows and rows[0]["audio_seconds"] >= 2.9 else None

    row = eventually(used, "the session's usage written")
    assert 2.9 <= row["audio_seconds"] <= 3.0 + 1e-3, row
    prom = metric(
        a,
        "voxgate_client_audio_seconds_total",
        client="tester",
        model="universal-streaming-english",
    )
    assert 2.9 <= prom <= 3.0 + 1e-3, prom
    refused = eventually(lambda: refused_with(a, 1008), "the next session refused")
    assert "audio_hours_per_day" in refused.reason and not refused.of_type("Begin"), refused
    assert metric(a, "voxgate_sessions_ended_total", outcome="limited") == 1.0


def test_the_spend_guard_takes_a_key_out_at_its_budget_on_every_replica(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Key "a" gets a budget of 0.001 USD a day through replica A at 3600 USD per session
    hour (1 USD per second): after a session of more than a millisecond on it, both
    replicas show it budget_exhausted (its reason says so), the next sessions go to
    "b", and a raised budget puts it back in rotation."""
    env = {
        "VOXGATE_REDIS_URL": redis_server.url,
        "VOXGATE_ADMIN_KEY": ADMIN_KEY,
        "VOXGATE_PRICES": "default=3600",
    }
    gw_a = gateway_factory("a=good-key,b=good-key-2", **env)
    gw_b = gateway_factory("a=good-key,b=good-key-2", **env)
    status, body = admin(gw_a, "PUT", "/admin/keys/a", {"budget_usd": 0.001, "period": "day"})
    assert status in (200, 201), body
    assert "secret" not in body
    for _ in range(2):  # one session on each key (the pool alternates)
        assert run(session(gw_a.url, audio.speech(1))).code == 1000
    for gw in (gw_a, gw_b):
        state = eventually(
            lambda gw=gw: admin_keys(gw)["a"]["state"] == "budget_exhausted" and admin_keys(gw),
            "key a out of rotation",
        )
        assert "budget_exhausted" in state["a"]["reason"], state["a"]
        assert state["b"]["state"] == "healthy"
    assert metric(gw_a, "voxgate_key_budget_used_ratio", key="a") >= 1.0
    before = admin_keys(gw_b)["a"]["sessions_total"]
    for _ in range(2):
        assert run(session(gw_b.url, audio.speech(1))).code == 1000
    assert admin_keys(gw_b)["a"]["sessions_total"] == before, "no session on an exhausted key"
    admin(gw_b, "PUT", "/admin/keys/a", {"budget_usd": 1000})
    eventually(lambda: admin_keys(gw_a)["a"]["state"] == "healthy", "key a back")


def test_usage_per_client_and_key_matches_the_audio_streamed(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """A 3 s and a 1.5 s session on two replicas: /admin/usage by client and by key,
    for the day and the month, hold 4.5 s of audio (within 0.1 s), the
    session seconds, the sessions and the cost at the configured price; the Prometheus
    counters say the same."""
    a, b = pair(gateway_factory, redis_server, VOXGATE_PRICES="default=0.36")
    assert run(session(a.url, audio.speech(2, pause=0.7))).code == 1000  # 3.0 s
    assert run(session(b.url, audio.speech(1, pause=0.7))).code == 1000  # 1.5 s

    def rows(by: str, period: str) -> list[dict[str, Any]] | None:
        status, body = admin(a, "GET", f"/admin/usage?by={by}&period={period}")
        assert status == 200, body
        got: list[dict[str, Any]] = body["rows"]
        return got if got and got[0]["sessions"] == 2 else None

    for by, name in (("client", "tester"), ("key", "main")):
        for period in ("day", "month"):
            (row,) = eventually(lambda by=by, period=period: rows(by, period), f"{by} {period}")
            assert row[by] == name
            assert abs(row["audio_seconds"] - 4.5) <= 0.1, row  # the audio sent, no more
            # The tests stream ahead of real time: the sessions are open a moment only.
            assert 0 < row["session_seconds"] < 30, row
            assert abs(row["cost_usd"] - row["session_seconds"] * 0.36 / 3600) < 1e-6, row
            assert set(row["models"]) == {"universal-streaming-english"}, row
    prom = sum(
        metric(
            gw,
            "voxgate_client_audio_seconds_total",
            client="tester",
            model="universal-streaming-english",
        )
        for gw in (a, b)
    )
    assert abs(prom - 4.5) <= 0.1, prom


def test_a_redis_outage_fails_open_or_closed_as_the_operator_chose(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Redis stopped: the replica set to ``open`` admits (the env client, and a client
    whose key it read from Redis before), the one set to ``closed`` refuses with an
    Error frame and 1013 naming the setting; both say Redis is down in the metric, and
    the closed one admits again once Redis is back."""
    common = {"VOXGATE_REDIS_URL": redis_server.url, "VOXGATE_ADMIN_KEY": ADMIN_KEY}
    opened = gateway_factory("main=good-key", VOXGATE_LIMITS_ON_REDIS_DOWN="open", **common)
    closed = gateway_factory("main=good-key", VOXGATE_LIMITS_ON_REDIS_DOWN="closed", **common)
    put_limits(opened, "svc", max_sessions=2)
    status, made = admin(opened, "POST", "/admin/clients/svc/keys", {})
    assert status == 201, made
    secret = made["secret"]
    for gw in (opened, closed):
        eventually(
            lambda gw=gw: run(session(gw.url, audio.speech(1), key=secret)).code == 1000,
            "the svc key works",
        )
    redis_server.stop()
    try:
        for gw in (opened, closed):
            eventually(
                lambda gw=gw: metric(gw, "voxgate_client_limits_redis_up") == 0.0, "redis down"
            )
        assert run(session(opened.url, audio.speech(1))).code == 1000
        assert run(session(opened.url, audio.speech(1), key=secret)).code == 1000
        refused = run(session(closed.url, audio.speech(1)))
        assert refused.code == 1013, refused
        assert "VOXGATE_LIMITS_ON_REDIS_DOWN=closed" in refused.of_type("Error")[0]["error"]
        assert not refused.of_type("Begin")
    finally:
        redis_server.start()
    eventually(lambda: run(session(closed.url, audio.speech(1))).code == 1000, "closed admits")


def voxgate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOXGATE_ADMIN_KEY": ADMIN_KEY}
    return subprocess.run(
        [sys.executable, "-m", "voxgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_manages_clients_and_prints_usage(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """``voxgate clients set/add-key/list/delete-key`` and ``voxgate usage`` against a
    running gateway: readable tables, ``--json``, and a key made by the CLI works."""
    gw, _ = pair(gateway_factory, redis_server)
    url = ["--url", gw.http_url]
    made = voxgate("clients", *url, "set", "cli-svc", "--max-sessions", "3")
    assert made.returncode == 0, made.stderr
    assert "cli-svc" in made.stdout and "MAX" in made.stdout, made.stdout
    key = voxgate("clients", *url, "--json", "add-key", "cli-svc", "--expires-in", "600")
    assert key.returncode == 0, key.stderr
    secret = json.loads(key.stdout)["secret"]
    eventually(lambda: run(session(gw.url, audio.speech(1), key=secret)).code == 1000, "CLI key")
    listed = voxgate("clients", *url)
    assert listed.returncode == 0, listed.stderr
    row = [line for line in listed.stdout.splitlines() if line.startswith("cli-svc")]
    assert row and row[0].split()[3] == "3", listed.stdout  # CLIENT SOURCE ACTIVE MAX
    assert secret not in listed.stdout

    def usage() -> str | None:
        out = voxgate("usage", *url, "--by", "client")
        assert out.returncode == 0, out.stderr
        return out.stdout if "cli-svc" in out.stdout else None

    table = eventually(usage, "usage of cli-svc")
    assert table.splitlines()[1].split()[:2] == ["CLIENT", "SESSIONS"], table
    as_json = json.loads(
        voxgate("usage", *url, "--json", "--by", "key", "--period", "month").stdout
    )
    assert as_json["rows"][0]["key"] == "main" and as_json["rows"][0]["sessions"] >= 1, as_json
    key_id = json.loads(key.stdout)["key_id"]
    assert voxgate("clients", *url, "delete-key", "cli-svc", key_id).returncode == 0
    assert voxgate("clients", *url, "delete-key", "cli-svc", key_id).returncode == 1
    status, audit = admin(gw, "GET", "/admin/audit?count=10")
    assert status == 200, audit
    newest = audit["entries"][0]
    assert newest["action"] == "client_key_deleted" and newest["target"] == "cli-svc", newest
    assert newest["who"].startswith(os.environ.get("USER", "cli") + "@127.0.0.1"), newest


def test_upstream_keys_added_and_retired_at_runtime_on_every_replica(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """An AssemblyAI key added through replica A (PUT with its secret) joins both
    replicas' pools without a restart; "a" retired through B (DELETE) takes no new
    session on either, while a session already running on it finishes normally. The
    secret is never answered, audited or logged; an env key's secret can not be
    changed at runtime (409), a new alias without a secret is a 400."""
    env = {"VOXGATE_REDIS_URL": redis_server.url, "VOXGATE_ADMIN_KEY": ADMIN_KEY}
    gw_a = gateway_factory("a=good-key", **env)
    gw_b = gateway_factory("a=good-key", **env)
    assert admin(gw_a, "PUT", "/admin/keys/a", {"secret": "good-key-2"})[0] == 409
    assert admin(gw_a, "PUT", "/admin/keys/extra", {"budget_usd": 5})[0] == 400
    status, body = admin(gw_a, "PUT", "/admin/keys/extra", {"secret": "good-key-2"})
    assert status == 201 and "secret" not in body and body["has_secret"], body
    for gw in (gw_a, gw_b):
        eventually(lambda gw=gw: "extra" in admin_keys(gw), f"{gw.url} has key extra")

    async def running_then_retired() -> Outcome:
        held = await open_client(gw_b.url)  # on "a" or "extra": the pool's choice
        assert json.loads(await asyncio.wait_for(held.recv(), WAIT))["type"] == "Begin"
        status, retired = admin(gw_b, "DELETE", "/admin/keys/a")
        assert status == 200, retired
        await asyncio.sleep(2.5)  # retired everywhere meanwhile; the session goes on
        for frame in audio.speech(1):
            await held.send(frame)
        await held.send(json.dumps({"type": "Terminate"}))
        return await collect(held, Outcome())

    out = run(running_then_retired())
    assert out.code == 1000 and out.finals, out
    for gw in (gw_a, gw_b):
        keys = eventually(
            lambda gw=gw: admin_keys(gw)["a"]["state"] == "retired" and admin_keys(gw), "retired"
        )
        before = keys["a"]["sessions_total"]
        for _ in range(3):
            assert run(session(gw.url, audio.speech(1))).code == 1000
        after = admin_keys(gw)
        assert after["a"]["sessions_total"] == before, "a retired key took a new session"
        assert after["extra"]["sessions_total"] >= 3
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    audit = json.dumps(r.xrange(layout.AUDIT))
    assert "good-key-2" not in audit and "key_added" in audit and "key_retired" in audit
    assert "good-key-2" not in gw_a.stderr() and "good-key-2" not in gw_b.stderr()


def test_one_process_without_redis_applies_the_limits_of_voxgate_client_limits(
    gateway_factory: GatewayFactory,
) -> None:
    """No Redis: VOXGATE_CLIENT_LIMITS gives the env client 1 concurrent session and 3 s
    of audio a day. A second session while one runs is refused (3009); a 6 s stream
    ends at 3 s (final turns, Termination, 1008); the next session is refused (1008)."""
    gw = gateway_factory(
        VOXGATE_CLIENT_LIMITS=f"tester.max_sessions=1,tester.audio_hours_per_day={3 / 3600}"
    )

    async def two_at_once() -> Outcome:
        held = await open_client(gw.url)
        assert json.loads(await asyncio.wait_for(held.recv(), WAIT))["type"] == "Begin"
        second = await session(gw.url, audio.speech(1))
        await held.send(json.dumps({"type": "Terminate"}))
        await collect(held, Outcome())
        return second

    second = run(two_at_once())
    assert second.code == 3009 and "max_sessions" in second.reason, second
    out = run(session(gw.url, audio.speech(4, pause=0.7)))
    assert out.code == 1008 and "audio_hours_per_day" in out.reason, out
    assert out.messages[-1]["type"] == "Termination", out.messages[-1]
    assert 2.9 <= out.messages[-1]["audio_duration_seconds"] <= 3.051, out.messages[-1]
    refused = run(session(gw.url, audio.speech(1)))
    assert refused.code == 1008 and not refused.of_type("Begin"), refused


def test_admin_bodies_are_bounded_in_size_and_depth_and_bad_numbers_are_a_400(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """A chunked body over 16 KB (under the edge's 64 KiB) is a 413, read no further;
    15,000 '[' a 400 (not a RecursionError's 500); an expiry of 1e400 a 400, and the
    client list still answers."""
    import http.client
    import urllib.parse

    gw = gateway_factory(
        "main=good-key", VOXGATE_REDIS_URL=redis_server.url, VOXGATE_ADMIN_KEY=ADMIN_KEY
    )
    url = urllib.parse.urlsplit(gw.http_url)

    def send(method: str, path: str, body: bytes, *, chunked: bool = False) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        try:
            headers = {"Authorization": ADMIN_KEY, "Content-Type": "application/json"}
            if chunked:
                pieces = iter([body[i : i + 1024] for i in range(0, len(body), 1024)])
                conn.request(method, path, body=pieces, headers=headers, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    big = b'{"max_sessions": 5, "pad": "' + b"x" * 20_000 + b'"}'
    status, body = send("PUT", "/admin/clients/svc", big, chunked=True)
    assert status == 413, (status, body)
    status, body = send("PUT", "/admin/clients/svc", b"[" * 15_000)
    assert status == 400, (status, body)
    assert admin(gw, "PUT", "/admin/clients/svc", {"max_sessions": 5})[0] == 201
    status, body = send("POST", "/admin/clients/svc/keys", b'{"expires_at": 1e400}')
    assert status == 400, (status, body)
    status, body = admin(gw, "GET", "/admin/clients")
    assert status == 200 and "svc" in [c["name"] for c in body["clients"]], body


def test_an_audio_budget_removed_no_longer_bounds_a_running_session(
    gateway_factory: GatewayFactory, redis_server: RedisServer, sandbox: Server
) -> None:
    """A session of a client with 3 s a day sends 1.5 s; the budget is removed (null):
    the same session then sends 3 s more and ends normally (1000), all 4.5 s heard."""
    a, _ = pair(gateway_factory, redis_server)
    put_limits(a, "tester", audio_hours_per_day=3 / 3600)
    in_force("tester", a, audio_hours_per_day=3 / 3600)

    async def budget_removed_meanwhile() -> Outcome:
        held = await open_client(a.url)
        assert json.loads(await asyncio.wait_for(held.recv(), WAIT))["type"] == "Begin"
        for frame in audio.speech(1):
            await held.send(frame)
        await asyncio.to_thread(put_limits, a, "tester", audio_hours_per_day=None)
        await asyncio.to_thread(in_force, "tester", a)
        await asyncio.sleep(2.0)  # a sync or two of the replica serving it
        for frame in audio.speech(2):
            await held.send(frame)
        await held.send(json.dumps({"type": "Terminate"}))
        return await collect(held, Outcome())

    out = run(budget_removed_meanwhile())
    assert out.code == 1000, out
    assert out.messages[-1]["audio_duration_seconds"] >= 4, out.messages[-1]


def test_a_runtime_keys_secret_changed_is_used_on_every_replica(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Key "extra" added at runtime with a wrong secret, "a" retired: sessions fail.
    PUT /admin/keys/extra with the right secret: both replicas serve on it."""
    gw_a, gw_b = pair(gateway_factory, redis_server)
    assert admin(gw_a, "PUT", "/admin/keys/extra", {"secret": "not-a-key-000"})[0] == 201
    assert admin(gw_a, "DELETE", "/admin/keys/main")[0] == 200
    for gw in (gw_a, gw_b):
        eventually(lambda gw=gw: admin_keys(gw)["main"]["state"] == "retired", "main retired")
    assert run(session(gw_a.url, audio.speech(1))).code != 1000  # the wrong secret
    assert admin(gw_b, "PUT", "/admin/keys/extra", {"secret": "good-key-2"})[0] == 200
    for gw in (gw_a, gw_b):
        eventually(
            lambda gw=gw: run(session(gw.url, audio.speech(1))).code == 1000,
            f"{gw.url} serves on extra's new secret",
            timeout=8.0,
        )
    assert "good-key-2" not in gw_a.stderr() and "not-a-key-000" not in gw_b.stderr()


def test_a_record_made_for_an_env_client_keeps_its_env_limits(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """ "tester" has max_sessions=1 from VOXGATE_CLIENT_LIMITS: a key added to it at
    runtime, then one more limit set, keep that limit in force."""
    a, _ = pair(gateway_factory, redis_server, VOXGATE_CLIENT_LIMITS="tester.max_sessions=1")
    in_force("tester", a, max_sessions=1)
    status, body = admin(a, "POST", "/admin/clients/tester/keys", {})
    assert status == 201, body
    put_limits(a, "tester", sessions_per_minute=100)
    in_force("tester", a, max_sessions=1, sessions_per_minute=100)


def test_client_records_and_upstream_key_settings_are_capped(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """With MAX_CLIENTS records and MAX_UPSTREAM_KEYS key settings in Redis, a new one
    is a 409 (a change to one that exists is not refused)."""
    from voxgate.tenants.records import MAX_CLIENTS, MAX_UPSTREAM_KEYS

    gw = gateway_factory(
        "main=good-key", VOXGATE_REDIS_URL=redis_server.url, VOXGATE_ADMIN_KEY=ADMIN_KEY
    )
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    record = {"limits": {}, "keys": [], "updated_at": 0.0}
    r.hset(
        layout.CLIENTS,
        mapping={f"c{i}": json.dumps({**record, "name": f"c{i}"}) for i in range(MAX_CLIENTS)},
    )
    r.hset(
        layout.UPSTREAM_KEYS,
        mapping={f"k{i}": json.dumps({"alias": f"k{i}"}) for i in range(MAX_UPSTREAM_KEYS)},
    )
    status, body = admin(gw, "PUT", "/admin/clients/other", {"max_sessions": 1})
    assert status == 400 and "reserved" in body["error"], body  # the overflow label
    status, body = admin(gw, "PUT", "/admin/clients/one-more", {"max_sessions": 1})
    assert status == 409 and "at most" in body["error"], body
    assert admin(gw, "POST", "/admin/clients/tester/keys", {})[0] == 409  # a new record too
    status, body = admin(gw, "PUT", "/admin/keys/one-more", {"secret": "good-key-2"})
    assert status == 409, body
    assert admin(gw, "PUT", "/admin/clients/c1", {"max_sessions": 2})[0] == 200
    assert not r.hexists(layout.CLIENTS, "one-more")
    r.delete(layout.CLIENTS, layout.UPSTREAM_KEYS)


def test_usage_waiting_in_memory_is_booked_to_the_day_it_was_used(
    redis_server: RedisServer,
) -> None:
    """1.5 s of audio used at 23:59:59 UTC and written after midnight land in that day's
    and month's hashes, not the next ones (a real redis-server, the service in process)."""
    from voxgate.access.clientkeys import ClientAuthenticator
    from voxgate.keys.pool import KeyPool
    from voxgate.metrics.gateway import Metrics
    from voxgate.settings import Settings
    from voxgate.tenants.records import Limits
    from voxgate.tenants.service import Tenants, Ticket

    now = [1_796_083_199.0]  # 2026-11-30T23:59:59Z

    async def scenario() -> None:
        env = {"VOXGATE_UPSTREAM_KEYS": "k", "VOXGATE_REDIS_URL": redis_server.url}
        settings = Settings.from_env(env)
        pool = KeyPool(
            list(settings.upstream_keys), max_sessions=5, sessions_per_minute=9, clock=float
        )
        tenants = Tenants(settings, ClientAuthenticator([]), pool, Metrics(), clock=lambda: now[0])
        ticket = Ticket("svc", "svc", "default", Limits(), member="m", booked=False)
        tenants.usage(ticket, "k", 1.5, 2.0)
        now[0] += 2.0  # 2026-12-01T00:00:01Z: the write comes after midnight
        await tenants.sync()
        await tenants.close()

    asyncio.run(scenario())
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    for period, date in (("day", "2026-11-30"), ("month", "2026-11")):
        assert r.hget(layout.usage_key("client", "svc", period, date), "audio_seconds") == "1.5"
    assert r.hget(layout.usage_key("client", "svc", "day", "2026-12-01"), "audio_seconds") is None
