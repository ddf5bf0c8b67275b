"""The gateway against the simulator reached directly, row by row of the reference
(``../shared/reference/assemblyai-v3-2026-11.md``).

For each row: one input (query, headers, frames), what AssemblyAI does with it (checked
on the direct run, so the simulator is held to the reference), then the same client
and input through a gateway, whose messages must equal the direct ones byte for byte,
apart from ``Begin.id`` and the clock-dependent fields (``expires_at``,
``session_duration_seconds``, a Heartbeat's wall-clock figures).

``KNOWN_GATEWAY_DIVERGENCES`` lists the rows where the gateway today differs from
AssemblyAI (issue 16): those run as ``xfail(strict=True)``, so a fix turns them into
an XPASS failure until the row leaves the list. ``GATEWAY_OWN_WORDING`` lists the rows
where the gateway answers itself by design with AssemblyAI's code in its own words:
there codes and message types must match, texts may differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from voxgate.bench.procs import Server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support import audio
from tests.support.gateway import CLIENT_KEY, CLIENT_KEYS, TEST_PACE_BURST
from tests.support.http import get_json
from tests.support.procs import start
from tests.support.wsclient import WAIT

#: The rows where the gateway today is not AssemblyAI (reference row -> why). The
#: gateway's fixes shrink this list; an entry whose row now passes fails as XPASS.
KNOWN_GATEWAY_DIVERGENCES: dict[str, str] = {
    "E a code added later (3010)": (
        "the gateway takes an unknown mid-session code as transient and reconnects "
        "(ref E 'Codes AssemblyAI adds later': relayed verbatim)"
    ),
}
#: Rows where the gateway answers by design with the same code in its own words.
GATEWAY_OWN_WORDING: dict[str, str] = {
    "C chunk of 20 ms": "the gateway's own 3007 text",
    "C message over 128 KB": "the gateway's own 1009 text",
    "A wrong credentials": "the gateway checks its own client keys",
    "A no credentials": "the gateway's own 1008 text",
}

SR16 = "sample_rate=16000"
US = SR16 + "&speech_model=universal-streaming-english&format_turns=true"
SPEECH = audio.frames(audio.utterance(0.8, 0.6))
TWO_TURNS = audio.frames(audio.utterance(0.8, 1.2) * 2)
#: The version header the Python SDK sends.
SDK_VERSION = "2025-05-12"


@dataclass
class Outcome:
    raw: list[str] = field(default_factory=list)
    code: int | None = None
    reason: str = ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.raw]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.of("Turn") if m["end_of_turn"]]


@dataclass(frozen=True)
class Row:
    """One reference row: its input and what AssemblyAI does (``expect`` on the
    direct run)."""

    name: str
    query: str
    steps: tuple[bytes | str, ...]
    expect: Callable[[Outcome], None]
    version: str | None = SDK_VERSION
    terminate: bool = True
    #: The gateway's pace burst for this row: "test" (generous) or "default".
    burst: str = "test"
    #: The upstream key's behaviour for this row (set through /sandbox/keys).
    behaviour: str = "ok"
    #: Seconds between the steps (0: all at once).
    interval: float = 0.0
    #: "valid" (the row key, the gateway's client key), "wrong" or "none".
    credential: str = "valid"


def works(out: Outcome) -> None:
    """Begin, at least one final turn, Termination, 1000."""
    assert out.code == 1000, (out.code, out.reason)
    assert out.messages[0]["type"] == "Begin" and out.messages[-1]["type"] == "Termination"
    assert out.finals


def refused(code: int, needle: str = "") -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert out.code == code, (out.code, out.reason)
        (error,) = out.of("Error")
        assert error["error_code"] == code and needle in error["error"]

    return check


def both(*checks: Callable[[Outcome], None]) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        for c in checks:
            c(out)

    return check


def formatted_pair(out: Outcome) -> None:
    assert [f["turn_is_formatted"] for f in out.finals] == [False, True]


def one_formatted_final(model: str) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert out.messages[0]["configuration"]["model"] == model
        assert [f["turn_is_formatted"] for f in out.finals] == [True]
        assert out.of("SpeechStarted")

    return check


def has(kind: str, test: Callable[[dict[str, Any]], bool] = lambda m: True) -> Callable[
    [Outcome], None
]:  # fmt: skip
    def check(out: Outcome) -> None:
        assert any(test(m) for m in out.of(kind)), kind

    return check


def opus_packet(size: int) -> bytes:
    return bytes([1 << 3]) + b"\x55" * (size - 1)  # SILK 20 ms, one frame


def mulaw(seconds: float, loud: bool) -> bytes:
    return (b"\x10" if loud else b"\xff") * int(8000 * seconds)


def update(**fields: Any) -> str:
    return json.dumps({"type": "UpdateConfiguration", **fields})


ROWS = [
    Row("B speech_model universal-streaming-english", US, tuple(SPEECH),
        both(works, formatted_pair)),
    Row("B speech_model u3-rt-pro", SR16 + "&speech_model=u3-rt-pro&format_turns=true",
        tuple(SPEECH), both(works, one_formatted_final("u3-rt-pro"))),
    Row("B speech_model omitted", SR16, tuple(SPEECH),
        both(works, one_formatted_final("universal-3-6-pro"))),
    Row("B speech_model unknown", SR16 + "&speech_model=universal-0-nothing", (),
        refused(3006, "speech_model")),
    Row("B sample_rate 96000", "sample_rate=96000&speech_model=universal-streaming-english",
        tuple(audio.frames(audio.utterance(4.8, 3.6), 9600)), works),
    Row("B sample_rate 8000", "sample_rate=8000&speech_model=universal-streaming-english",
        tuple(audio.frames(audio.utterance(0.4, 0.3), 800)), works),
    Row("B encoding pcm_mulaw",
        "encoding=pcm_mulaw&sample_rate=8000&speech_model=universal-streaming-english",
        tuple(audio.frames(mulaw(0.8, True) + mulaw(0.6, False), 400)), works),
    Row("B encoding opus", "encoding=opus&speech_model=universal-streaming-english",
        tuple([opus_packet(60)] * 50 + [opus_packet(3)] * 30), works),
    Row("B encoding added later", SR16 + "&encoding=pcm_s24le", (), refused(3006, "encoding")),
    Row("B speaker_labels_revision_interval_ms 2 h",
        US + "&speaker_labels=true&speaker_labels_revision_interval_ms=7200000",
        tuple(SPEECH), works),
    Row("B redact_pii_policies comma form",
        US + "&redact_pii=true&redact_pii_policies=person_name,phone_number", tuple(SPEECH), works),
    Row("B lenient spellings",
        SR16 + "&speech_model=universal-streaming-english&format_turns=1&min_turn_silence=400.0",
        tuple(SPEECH), both(works, formatted_pair)),
    Row("B same parameter twice", US + "&sample_rate=16000", tuple(SPEECH), works),
    Row("B unknown parameter", US + "&previous_context_n_turns=3&some_new_option=x",
        tuple(SPEECH), works),
    Row("B the documented parameters", US + "&" + "&".join(f"{k}={quote(v)}" for k, v in [
        ("end_of_turn_confidence_threshold", "0.7"), ("min_turn_silence", "300"),
        ("max_turn_silence", "1500"), ("vad_threshold", "0.4"),
        ("keyterms_prompt", json.dumps(["voxgate", "AssemblyAI"])), ("prompt", "p" * 1750),
        ("agent_context", "a" * 1750), ("previous_context_n_turns", "100"),
        ("max_turn_duration", "30000"), ("interruption_delay", "1000"),
        ("continuous_partials", "true"), ("mode", "max_accuracy"),
        ("language_codes", json.dumps(["en", "es"])), ("domain", "medical-v1"),
        ("voice_focus", "true"), ("voice_focus_threshold", "0.5"),
        ("inactivity_timeout", "3600"), ("filter_profanity", "True"), ("max_speakers", "10"),
        ("redact_pii", "true"), ("redact_pii_policies", json.dumps(["person_name"])),
        ("redact_pii_sub", "hash"), ("include_partial_turns", "false"),
        ("customer_support_audio_capture", "false"), ("webhook_url", "https://example.com/h"),
        ("webhook_auth_header_name", "X-Auth"), ("webhook_auth_header_value", "v"),
        ("turn_left_pad_ms", "100"), ("speaker_labels_revision_interval_ms", "0"),
    ]), tuple(SPEECH), both(works, formatted_pair)),
    Row("B speaker_labels", US + "&speaker_labels=true", tuple(TWO_TURNS),
        both(works, has("Turn", lambda m: m.get("speaker_label") == "B"),
             has("SpeakerRevision"))),
    Row("B language_detection", US + "&language_detection=true", tuple(SPEECH),
        both(works, has("Turn", lambda m: m.get("language_code") == "en"))),
    Row("B llm_gateway", US + "&llm_gateway=" + quote(json.dumps({"model": "m"})), tuple(SPEECH),
        both(works, has("LLMGatewayResponse", lambda m: m["turn_order"] == 0))),
    Row("B session_heartbeat", US + "&session_heartbeat=true", tuple(SPEECH),
        both(works, has("Heartbeat", lambda m: m["total_audio_received_ms"] == 1000))),
    Row("B acknowledge_silence", US + "&acknowledge_silence=true", tuple(TWO_TURNS),
        both(works, has("Silence"))),
    Row("B deprecated parameter", US + "&end_of_turn_confidence_threshold=0.5", tuple(SPEECH),
        both(works, has("Warning"))),
    Row("C UpdateConfiguration", US, (update(min_turn_silence=300, max_turn_silence=900),
        *SPEECH), works),
    Row("C UpdateConfiguration out of range", US, (update(min_turn_silence=70000), *SPEECH),
        both(works, has("Warning"))),
    Row("C unknown client message type", US, ('{"type": "FutureControl"}',),
        refused(3006, "Invalid Message Type: FutureControl")),
    Row("C a JSON array", US, ("[]",), refused(3006)),
    Row("C ForceEndpoint", US, (*audio.frames(audio.tone(0.8)), '{"type": "ForceEndpoint"}'),
        both(works, formatted_pair)),
    Row("C KeepAlive", US, ('{"type": "KeepAlive"}', *SPEECH), works),
    Row("C chunk of 20 ms", US, (bytes(640),), refused(3007)),
    Row("C message over 128 KB", "encoding=opus", (bytes(140_000),), refused(1009)),
    Row("C pace look-ahead", US, tuple(audio.frames(audio.utterance(0.8, 0.6) * 9)), works,
        burst="default"),
    Row("C audio sent before Begin", US, tuple(audio.frames(audio.utterance(0.8, 0.6) * 2)),
        works, burst="default", behaviour="late-begin@2.5", interval=audio.FRAME_MS / 1000),
    Row("E 3008 mid-session", US, tuple(audio.frames(audio.utterance(0.8, 0.6) * 2)),
        refused(3008, "Session Expired"), behaviour="drop-3008@1.5"),
    Row("E 4031 mid-session (legacy)", US, tuple(audio.frames(audio.utterance(0.8, 0.6) * 2)),
        refused(4031), behaviour="drop-4031@1.5"),
    Row("E a code added later (3010)", US, tuple(audio.frames(audio.utterance(0.8, 0.6) * 2)),
        refused(3010), behaviour="drop-3010@1.5"),
    Row("A wrong credentials", US, (), refused(1008, "Unauthorized Connection"),
        credential="wrong"),
    Row("A no credentials", US, (), refused(1008, "Missing Authorization header"),
        credential="none"),
    Row("A AssemblyAI-Version absent", US, tuple(SPEECH),
        both(works, lambda out: out.messages[0]["configuration"]["api_version"] != SDK_VERSION),
        version=None),
]  # fmt: skip


async def talk(url: str, key: str, row: Row) -> Outcome:
    headers = {}
    if row.credential != "none":
        headers["Authorization"] = key if row.credential == "valid" else "not-a-key"
    if row.version is not None:
        headers["AssemblyAI-Version"] = row.version
    out = Outcome()
    async with asyncio.timeout(WAIT * 3):
        async with connect(
            f"{url}/v3/ws?{row.query}",
            additional_headers=headers,
            open_timeout=WAIT,
            compression=None,
            max_size=None,
        ) as ws:

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        out.raw.append(raw if isinstance(raw, str) else raw.hex())

            reader = asyncio.create_task(read())
            try:
                for step in row.steps:
                    await ws.send(step)
                    if row.interval:
                        await asyncio.sleep(row.interval)
                if row.terminate:
                    await ws.send(json.dumps({"type": "Terminate"}))
            except ConnectionClosed:
                pass
            await reader
        out.code, out.reason = ws.close_code, ws.close_reason or ""
    return out


#: Fields that depend on the clock or the session's identity, by message type.
VOLATILE = {
    "Begin": ("id", "expires_at"),
    "Termination": ("session_duration_seconds",),
    "Heartbeat": ("total_duration_ms", "realtime_factor"),
}


def comparable(raw: str, wording: bool) -> str:
    """The message as compared: verbatim, but with volatile fields out (and, for a
    row in GATEWAY_OWN_WORDING, an Error's text)."""
    message = json.loads(raw)
    kind = message.get("type") if isinstance(message, dict) else None
    if kind in VOLATILE or (wording and kind == "Error"):
        for name in VOLATILE.get(kind, ("error",)):
            message.pop(name, None)
        return json.dumps(message, sort_keys=True)
    return raw


def gateway_default_pace_burst() -> float:
    from voxgate.settings import Settings

    (burst,) = [f.default for f in dataclasses.fields(Settings) if f.name == "pace_burst_seconds"]
    assert isinstance(burst, float)
    return burst


_DIRECT: dict[str, Outcome] = {}
#: The upstream key both runs use (direct, and the gateways' only key).
ROW_KEY = "good-key"


@contextlib.contextmanager
def key_behaving(sandbox: Server, behaviour: str) -> Iterator[None]:
    """The row key behaves as ``behaviour`` for the block (then ``ok`` again)."""
    if behaviour == "ok":
        yield
        return
    get_json(f"{sandbox.http_url}/sandbox/keys?set={ROW_KEY}&behaviour={quote(behaviour)}")
    try:
        yield
    finally:
        get_json(f"{sandbox.http_url}/sandbox/keys?set={ROW_KEY}&behaviour=ok")


def direct(sandbox: Server, row: Row) -> Outcome:
    if row.name not in _DIRECT:
        with key_behaving(sandbox, row.behaviour):
            _DIRECT[row.name] = asyncio.run(talk(sandbox.url, ROW_KEY, row))
    return _DIRECT[row.name]


@pytest.fixture(scope="module")
def gateways(
    sandbox: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Two gateways in front of the module's simulator: the tests' generous pace burst,
    and the gateway's own default."""
    logs = tmp_path_factory.mktemp("fidelity")
    started = {}
    for name, burst in (("test", TEST_PACE_BURST), ("default", gateway_default_pace_burst())):
        started[name] = start(
            ["serve"],
            {
                "VOXGATE_UPSTREAM_URL": sandbox.url + "/v3/ws",
                "VOXGATE_UPSTREAM_KEYS": f"main={ROW_KEY}",
                "VOXGATE_CLIENT_KEYS": CLIENT_KEYS,
                "VOXGATE_PORT": "0",
                "VOXGATE_PACE_BURST_SECONDS": str(burst),
            },
            logs / f"gateway-{name}.log",
        )
    yield started
    for proc in started.values():
        proc.stop()


def params(marks_from: dict[str, str] | None) -> list[Any]:
    out = []
    for row in ROWS:
        marks = []
        if marks_from is not None and row.name in marks_from:
            marks.append(pytest.mark.xfail(strict=True, reason=marks_from[row.name]))
        out.append(pytest.param(row, id=row.name, marks=marks))
    return out


def test_the_divergence_lists_name_real_rows() -> None:
    names = {row.name for row in ROWS}
    assert set(KNOWN_GATEWAY_DIVERGENCES) <= names and set(GATEWAY_OWN_WORDING) <= names
    assert not set(KNOWN_GATEWAY_DIVERGENCES) & set(GATEWAY_OWN_WORDING)


@pytest.mark.parametrize("row", params(None))
def test_the_simulator_does_what_the_reference_says(sandbox: Server, row: Row) -> None:
    """The direct run shows what AssemblyAI does with the row's input."""
    row.expect(direct(sandbox, row))


@pytest.mark.parametrize("row", params(KNOWN_GATEWAY_DIVERGENCES))
def test_the_gateway_answers_as_the_simulator_does(
    sandbox: Server, gateways: dict[str, Server], row: Row
) -> None:
    """Same client, same input, through the gateway: the same messages, byte for byte
    but for ids and clock fields, and the same close."""
    want = direct(sandbox, row)
    with key_behaving(sandbox, row.behaviour):
        got = asyncio.run(talk(gateways[row.burst].url, CLIENT_KEY, row))
    wording = row.name in GATEWAY_OWN_WORDING
    assert [comparable(r, wording) for r in got.raw] == [comparable(r, wording) for r in want.raw]
    assert got.code == want.code
    if not wording:
        assert got.reason == want.reason
