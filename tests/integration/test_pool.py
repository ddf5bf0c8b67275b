"""The key pool against the simulator: failover at connect, 402 handling, recovery."""

from __future__ import annotations

import asyncio
import time

from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import ADMIN_KEY, GatewayFactory, admin_keys, metric, sandbox_sessions
from tests.support.http import get_json
from tests.support.wsclient import Outcome, run, session


def test_a_pool_with_broken_keys_serves_every_client_on_the_working_one(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """Keys that answer 402 at the upgrade, 1008 about the balance, 3009, and one that
    works. Four sessions one after another: each broken key fails once, is counted once
    under its class, and the session fails over. Then eight at once: all complete, and
    the keys that need billing are not tried again."""
    gw = gateway_factory(
        "pay=pay-key,bal=balance-key,lim=limited-key,main=good-key",
        VOXGATE_ADMIN_KEY=ADMIN_KEY,
    )
    before = len(sandbox_sessions(sandbox))
    sequential = [run(session(gw.url, audio.speech(pause=0.6))) for _ in range(4)]
    assert [o.code for o in sequential] == [1000] * 4
    assert metric(gw, "voxgate_upstream_402_total", key="pay") == 1.0
    assert metric(gw, "voxgate_upstream_402_total", key="bal") == 1.0
    assert metric(gw, "voxgate_upstream_errors_total", key="bal", failure="payment_required") == 1
    assert metric(gw, "voxgate_upstream_errors_total", key="lim", failure="rate_limited") == 1.0
    assert metric(gw, "voxgate_upstream_402_total", key="lim") == 0.0
    assert metric(gw, "voxgate_failovers_total", phase="connect") == 3.0

    async def eight() -> list[Outcome]:
        return list(
            await asyncio.gather(*(session(gw.url, audio.speech(pause=0.6)) for _ in range(8)))
        )

    outcomes = sequential + run(eight())
    assert [o.code for o in outcomes] == [1000] * 12
    assert all(o.of_type("Error") == [] and o.finals for o in outcomes)
    assert metric(gw, "voxgate_upstream_402_total", key="pay") == 1.0
    assert metric(gw, "voxgate_upstream_402_total", key="bal") == 1.0
    assert metric(gw, "voxgate_upstream_402_total", key="main") == 0.0
    keys = admin_keys(gw)
    assert keys["pay"]["state"] == keys["bal"]["state"] == "disabled_payment_required"
    assert "payment method" in keys["pay"]["remedy"]
    assert keys["lim"]["state"] in ("cooling_down", "healthy")  # backoff of 0.5-1 s
    assert keys["main"]["state"] == "healthy" and keys["main"]["sessions_total"] >= 8
    served = [s for s in sandbox_sessions(sandbox)[before:] if s["end"] == "terminated"]
    assert len(served) == 12 and {s["behaviour"] for s in served} == {"ok"}
    assert metric(gw, "voxgate_upstream_key_state", key="pay", state="disabled_payment_required")


def test_when_every_key_needs_billing_the_client_is_told_so(
    gateway_factory: GatewayFactory,
) -> None:
    """Two keys, one 402 at the upgrade, one 4002: the client gets 1008 saying every
    key needs billing; a second client is refused at once without trying upstream."""
    gw = gateway_factory("pay=pay-key,funds=funds-key")
    first = run(session(gw.url, audio.speech(pause=0.6)))
    assert first.code == 1008
    assert (
        "every AssemblyAI key of this gateway needs billing" in first.of_type("Error")[0]["error"]
    )
    started = time.monotonic()
    second = run(session(gw.url, audio.speech(pause=0.6)))
    assert second.code == 1008 and "needs billing" in second.reason
    assert time.monotonic() - started < 2.0
    assert metric(gw, "voxgate_upstream_402_total", key="pay") == 1.0


def test_a_key_whose_account_is_upgraded_comes_back_by_itself(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """A 402 key leaves rotation; once the simulator says its account is upgraded,
    the background probe (through /v3/token) puts it back and it serves again."""
    gw = gateway_factory(
        "upg=upgrade-key,main=good-key",
        VOXGATE_ADMIN_KEY=ADMIN_KEY,
        VOXGATE_PROBE_DELAY="1",
        VOXGATE_PROBE_INTERVAL="1",
    )
    assert run(session(gw.url, audio.speech(pause=0.6))).code == 1000
    assert admin_keys(gw)["upg"]["state"] == "disabled_payment_required"
    time.sleep(2.5)  # probes run and still find it unbilled
    assert admin_keys(gw)["upg"]["state"] == "disabled_payment_required"
    probes_402 = metric(gw, "voxgate_upstream_402_total", key="upg")
    assert probes_402 >= 2.0  # the upgrade refusal plus at least one failed probe
    get_json(f"{sandbox.http_url}/sandbox/keys?set=upgrade-key&behaviour=ok")
    try:
        deadline = time.monotonic() + 10
        while admin_keys(gw)["upg"]["state"] != "healthy":
            assert time.monotonic() < deadline, admin_keys(gw)["upg"]
            time.sleep(0.2)
        before = len(sandbox_sessions(sandbox))
        for _ in range(2):
            assert run(session(gw.url, audio.speech(pause=0.6))).code == 1000
        assert admin_keys(gw)["upg"]["sessions_total"] >= 2
        assert len(sandbox_sessions(sandbox)) - before == 2
    finally:
        get_json(f"{sandbox.http_url}/sandbox/keys?set=upgrade-key&behaviour=402")


def test_a_failover_that_runs_out_of_time_leaks_no_lease(
    gateway_factory: GatewayFactory,
) -> None:
    """A key that never answers the handshake, one that never sends Begin, and a good
    one, with a failover deadline that the first two use up: the client gets 1013 and
    no key is left holding a session that does not exist."""
    gw = gateway_factory(
        "hang=hang-key,quiet=silent-key,main=good-key",
        VOXGATE_ADMIN_KEY=ADMIN_KEY,
        VOXGATE_CONNECT_TIMEOUT="1",
        VOXGATE_FAILOVER_TIMEOUT="1.5",
    )
    out = run(session(gw.url, []))
    assert out.code == 1013, out
    keys = admin_keys(gw)
    assert {alias: k["active_sessions"] for alias, k in keys.items()} == {
        "hang": 0,
        "quiet": 0,
        "main": 0,
    }
    assert keys["main"]["sessions_total"] == 0
