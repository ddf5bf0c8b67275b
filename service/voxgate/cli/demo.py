"""``voxgate demo``: the whole path on one machine, with no AssemblyAI key.

Starts the upstream simulator and a gateway in this process (ephemeral ports),
streams the bundled sample WAV through the gateway at real-time pace and prints
the turns as they arrive. With ``--stay`` both keep running so other clients
(the AssemblyAI SDK, ``voxgate stream``) can connect until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

DEMO_UPSTREAM_KEY = "sandbox-upstream-key"
DEMO_CLIENT_KEY = "demo-client-key"
#: Deadline for the embedded gateway to start listening.
START_TIMEOUT = 10.0


def sample_wav() -> Path:
    return Path(str(resources.files("voxgate") / "samples" / "hello.wav"))


HELP = "simulator + gateway + a sample stream, all on this machine, no key needed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("wav", nargs="?", type=Path, help="WAV to stream (default: the sample)")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: any free)")
    parser.add_argument(
        "--stay", action="store_true", help="keep gateway and simulator up after the stream"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve wss:// and https:// with a throwaway self-signed certificate (openssl)",
    )


def run(ns: argparse.Namespace) -> int:
    return asyncio.run(_demo(ns))


async def _demo(ns: argparse.Namespace) -> int:
    from voxgate.logs import configure_logging

    configure_logging("console", "warning")
    wav: Path = ns.wav or sample_wav()
    with tempfile.TemporaryDirectory(prefix="voxgate-demo-") as folder:
        return await _run_demo(ns, wav, Path(folder))


async def _run_demo(ns: argparse.Namespace, wav: Path, folder: Path) -> int:
    # The simulator and the server are imported by this command only.
    from voxgate.cli.stream import StreamError, printer, stream_file
    from voxgate.edge.tls import TlsError, self_signed
    from voxgate.sandbox.server import SandboxConfig, serve_sandbox
    from voxgate.server import bind, build_server
    from voxgate.settings import Settings, UpstreamKey, parse_client_keys

    cert = key = None
    if ns.tls:
        try:
            cert, key = self_signed(folder)
        except TlsError as exc:
            print(f"cannot make a certificate: {exc}", file=sys.stderr)
            return 2
        # This process's own client trusts it the way any Python client does.
        os.environ["SSL_CERT_FILE"] = str(cert)
    sandbox = await serve_sandbox(SandboxConfig.open(), "127.0.0.1", 0)
    settings = Settings(
        upstream_url=f"ws://127.0.0.1:{sandbox.port}/v3/ws",
        upstream_keys=(UpstreamKey("sandbox", DEMO_UPSTREAM_KEY),),
        client_keys=parse_client_keys(f"demo={DEMO_CLIENT_KEY}"),
        port=ns.port,
        drain_timeout=1.0,
        tls_cert=str(cert) if cert else None,
        tls_key=str(key) if key else None,
    )
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    server = build_server(settings)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"{'wss' if cert else 'ws'}://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
                await asyncio.sleep(0.05)
        upstream = f"ws://127.0.0.1:{sandbox.port}/v3/ws"
        print(f"upstream simulator  {upstream}  (stands in for AssemblyAI)")
        print(f"voxgate gateway     {url}/v3/ws  (client key: {DEMO_CLIENT_KEY})")
        if cert:
            print(
                f"self-signed certificate {cert} (for this run): trust it with "
                f"SSL_CERT_FILE={cert} (Python) or NODE_EXTRA_CA_CERTS={cert} (Node)"
            )
        print(f"streaming {wav} at real-time pace...\n")
        try:
            await stream_file(url, DEMO_CLIENT_KEY, wav, on_message=printer(sys.stdout.isatty()))
        except StreamError as exc:
            print(f"\nstream failed: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"\ncannot stream {wav}: {exc}", file=sys.stderr)
            return 2
        if ns.stay:
            print(
                f"\ngateway still up at {url} (client key {DEMO_CLIENT_KEY}); Ctrl-C to stop.\n"
                "Try: voxgate stream FILE.wav --url "
                f"{url} --key {DEMO_CLIENT_KEY}"
            )
            await serving
        return 0
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await sandbox.close()
