"""The gateway's WebSocket (voxgate.ws) as the Autobahn Testsuite's peer; run by
scripts/autobahn.

  autobahn_peer.py server           an echo server on 127.0.0.1 (a free port, printed as
                                    "PORT <n>"), served the way the gateway serves /v3/ws:
                                    uvicorn hands the upgrade to voxgate.ws.server
  autobahn_peer.py client URL       our client (voxgate.ws.client) runs every case of the
                                    fuzzingserver at URL, echoing what it receives
  autobahn_peer.py summary DIR...   counts of each report's results (index.json); exit 1
                                    on any FAILED

Both roles use a 16 MiB message limit (the cases of section 9 send up to 16 MiB, and
4 MiB in 64-byte fragments) with the codec's default bounds for it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import uvicorn
from voxgate.server import bind
from voxgate.ws import client
from voxgate.ws.connection import ConnectionClosed
from voxgate.ws.server import ServerWebSocket, protocol_factory

MAX_SIZE = 16 * 1024 * 1024
MAX_QUEUE = 16
CLOSE_TIMEOUT = 2.0
#: A case that runs longer than this is abandoned by our client (Autobahn's own
#: per-case waits are shorter, except section 9's 100 s for slow peers).
CASE_TIMEOUT = 120.0
AGENT = "voxgate"
ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


async def echo(ws: ServerWebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send(await ws.recv())
    except ConnectionClosed:
        pass


async def no_http(scope: object, receive: object, send: object) -> None:
    raise RuntimeError("only WebSocket upgrades are served")


async def serve() -> None:
    sock = bind("127.0.0.1", 0)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    websocket = protocol_factory(
        echo,
        path="/",
        max_size=MAX_SIZE,
        max_queue=MAX_QUEUE,
        ping_interval=0,
        close_timeout=CLOSE_TIMEOUT,
    )
    config = uvicorn.Config(
        no_http,
        http="auto",
        ws=websocket,  # type: ignore[arg-type]
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    await uvicorn.Server(config).serve(sockets=[sock])


async def open_client(url: str) -> client.ClientWebSocket:
    return await client.connect(
        url, headers={}, max_size=MAX_SIZE, max_queue=MAX_QUEUE, close_timeout=CLOSE_TIMEOUT
    )


async def run_case(base: str, case: int) -> None:
    ws = await open_client(f"{base}/runCase?case={case}&agent={AGENT}")
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            try:
                while True:
                    await ws.send(await ws.recv())
            except ConnectionClosed:
                pass
            await ws.wait_closed()
    except TimeoutError:
        ws.abort()


async def run_client(base: str) -> None:
    ws = await open_client(f"{base}/getCaseCount")
    count = int(await ws.recv())
    await ws.close()
    for case in range(1, count + 1):
        await run_case(base, case)
    ws = await open_client(f"{base}/updateReports?agent={AGENT}")
    await ws.close()
    print(f"ran {count} cases", flush=True)


def summary(outdirs: list[str]) -> int:
    failed = 0
    for outdir in outdirs:
        index = json.loads((Path(outdir) / "index.json").read_text())
        if not any(index.values()):
            print(f"{Path(outdir).name}: no case ran")
            failed += 1
        for agent, cases in index.items():
            counts = Counter(result["behavior"] for result in cases.values())
            close = Counter(result["behaviorClose"] for result in cases.values())
            line = ", ".join(f"{counts.get(k, 0)} {k}" for k in ORDER)
            print(f"{Path(outdir).name} ({agent}): {len(cases)} cases: {line}")
            bad = sorted(
                (
                    case
                    for case, r in cases.items()
                    if "FAILED" in (r["behavior"], r["behaviorClose"])
                ),
                key=lambda c: [int(p) for p in c.split(".")],
            )
            if close.get("FAILED"):
                print(f"  closing handshake FAILED in {close['FAILED']} cases")
            if bad:
                print(f"  FAILED: {' '.join(bad)}")
            failed += len(bad)
            strict = sorted(
                (c for c, r in cases.items() if r["behavior"] == "NON-STRICT"),
                key=lambda c: [int(p) for p in c.split(".")],
            )
            if strict:
                print(f"  NON-STRICT: {' '.join(strict)}")
    return 1 if failed else 0


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "server":
        asyncio.run(serve())
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        asyncio.run(run_client(sys.argv[2].rstrip("/")))
        return 0
    if len(sys.argv) >= 3 and sys.argv[1] == "summary":
        return summary(sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
