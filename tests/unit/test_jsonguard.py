"""JSON from a peer parsed with bounds (protocol/jsonguard.py), and what relies on it:
client control messages, upstream HTTP error bodies, the key-slot gauge, the
simulator's junk behaviours."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest
from voxgate.keys.pool import KeyPool, Lease
from voxgate.metrics.gateway import Metrics
from voxgate.protocol import (
    MAX_JSON_DEPTH,
    CloseCode,
    ProtocolViolation,
    UnsafeJson,
    Violation,
    loads_bounded,
    parse_control,
)
from voxgate.protocol.jsonguard import json_depth
from voxgate.sandbox.behaviours import JUNK, Kind, parse_behaviour
from voxgate.settings import UpstreamKey
from voxgate.upstream.failures import FailureClass, http_failure


def turn(words: int) -> str:
    """A Turn as AssemblyAI sends it, with ``words`` words (one object each)."""
    listed = [
        {"text": f"w{i}", "start": i * 300, "end": i * 300 + 250, "confidence": 0.9,
         "word_is_final": True}
        for i in range(words)
    ]  # fmt: skip
    return json.dumps(
        {"type": "Turn", "turn_order": 0, "end_of_turn": False, "transcript": "", "words": listed}
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("words", [0, 5, 60, MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH, 600])
def test_a_turn_parses_as_json_loads_does_on_both_paths(words: int) -> None:
    """Few brackets: parsed at once; many (a long Turn): parsed, then its depth
    measured. Either way the result is json.loads's."""
    text = turn(words)
    assert loads_bounded(text) == json.loads(text)
    assert loads_bounded(text.encode()) == json.loads(text)


def test_depth_is_bounded_at_max_json_depth_whatever_the_path() -> None:
    """MAX_JSON_DEPTH levels parse; one more does not, neither with few brackets in
    all nor hidden among many (a long list of flat objects, then one deep branch)."""
    assert loads_bounded(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    for text in (
        nested(MAX_JSON_DEPTH + 1),
        "[" + "{}," * 300 + nested(MAX_JSON_DEPTH) + "]",
        '{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1),
    ):
        with pytest.raises(UnsafeJson) as refused:
            loads_bounded(text)
        assert refused.value.reason == "too_deep"
        assert isinstance(refused.value, ValueError)  # one `except ValueError` covers it


def test_nesting_deep_enough_to_break_json_loads_is_a_value_error() -> None:
    """100,000 levels make json.loads raise RecursionError (not a ValueError): the
    guard turns it into UnsafeJson, also for unbalanced or broken text."""
    with pytest.raises(RecursionError):
        json.loads(nested(100_000))
    for text in (nested(100_000), "[" * 100_000, "[" * 100_000 + '"'):
        with pytest.raises(UnsafeJson):
            loads_bounded(text)


def test_brackets_in_strings_do_not_count_as_depth_and_bad_json_stays_bad() -> None:
    text = json.dumps({"transcript": "[" * 1000 + "{" * 1000})
    assert loads_bounded(text) == json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads_bounded('{"type": "Begin", "id": ')
    with pytest.raises(json.JSONDecodeError):
        loads_bounded("{" * 100 + "x")


def test_size_bound() -> None:
    assert loads_bounded("[1, 2]", max_chars=6) == [1, 2]
    with pytest.raises(UnsafeJson) as refused:
        loads_bounded("[1, 2, 3]", max_chars=6)
    assert refused.value.reason == "too_large"


def test_json_depth_counts_levels_and_stops_past_the_limit() -> None:
    assert json_depth(1, 5) == 0
    assert json_depth([], 5) == 1
    assert json_depth({"a": [{"b": 1}]}, 5) == 3
    assert json_depth(json.loads(nested(50)), 10) == 11  # stopped at limit + 1


def test_a_deep_control_message_is_3006_not_a_gateway_bug() -> None:
    """A client's text frame nested 100,000 deep is refused like bad JSON (3006,
    bad_json); it used to raise RecursionError (a 1011 'Internal gateway error')."""
    with pytest.raises(ProtocolViolation) as refused:
        parse_control(nested(100_000))
    assert refused.value.code == CloseCode.INVALID_MESSAGE
    assert refused.value.violation is Violation.BAD_JSON
    assert f"deeper than {MAX_JSON_DEPTH}" in refused.value.reason


def test_a_deep_http_error_body_from_upstream_is_classified_not_raised() -> None:
    """Upstream's answer to the upgrade or to /v3/token is parsed for its status and
    words: a hostile body is just text."""
    failure = http_failure(503, nested(4096).encode())
    assert failure.failure is FailureClass.TRANSIENT
    assert failure.detail.startswith("[[[")


def test_the_key_sessions_gauge_reads_the_pool_at_each_scrape() -> None:
    """A lease taken or given back on any path shows in the gauge without anyone
    telling the metrics (it read 1 while 99 slots had leaked)."""
    pool = KeyPool(
        [UpstreamKey("main", "secret")], max_sessions=100, sessions_per_minute=100, clock=lambda: 0
    )
    metrics = Metrics()
    metrics.key_changed(pool.record("main"))

    def gauge() -> str:
        text = generate_latest(metrics.registry).decode()
        (line,) = [x for x in text.splitlines() if x.startswith("voxgate_upstream_key_sessions")]
        return line.rpartition(" ")[2]

    leases = [pool.acquire() for _ in range(3)]
    assert gauge() == "3.0"
    for lease in leases:
        assert isinstance(lease, Lease)
        pool.release(lease)
    assert gauge() == "0.0"


@pytest.mark.parametrize("name", sorted(JUNK))
def test_the_simulators_junk_behaviours_parse(name: str) -> None:
    assert parse_behaviour(name).kind is Kind.JUNK
    assert not parse_behaviour(name).serves_sessions
