"""The shared key pool's pure helpers: which transitions are shared, the states hash,
and which states of other replicas are adopted."""

from __future__ import annotations

from voxgate.keys.layout import SharedState, decode_states, encode_state
from voxgate.keys.pool import KeyState, Transition
from voxgate.keys.shared import is_shared, to_adopt


def test_only_disabling_and_recovering_transitions_are_shared() -> None:
    """A key taken out (402, 401) or put back from a disabled state is written for all;
    cooling down and recovering from a cool-down stay this replica's own business."""
    H, C, P, U = (
        KeyState.HEALTHY,
        KeyState.COOLING,
        KeyState.PAYMENT_REQUIRED,
        KeyState.UNAUTHORIZED,
    )
    assert is_shared(Transition("k", H, P, "402"))
    assert is_shared(Transition("k", C, U, "401"))
    assert is_shared(Transition("k", P, H, "works"))
    assert not is_shared(Transition("k", H, C, "3009"))
    assert not is_shared(Transition("k", C, H, "works"))


def test_states_decode_and_skip_what_does_not_parse() -> None:
    """The states hash round-trips through encode/decode (plus the version Redis adds);
    an entry another program wrote badly is skipped, not fatal."""
    body = encode_state(
        Transition("k0", KeyState.HEALTHY, KeyState.PAYMENT_REQUIRED, "402"), "a", 1
    )
    versioned = body[:-1] + ', "version": 7}'
    states = decode_states({"k0": versioned, "k1": "not json", "k2": '{"state": "odd"}'})
    assert states == [SharedState("k0", KeyState.PAYMENT_REQUIRED, "402", "a", 7)]


def test_only_newer_states_of_known_keys_from_others_are_adopted() -> None:
    """Each version is applied once; this replica's own writes and keys it does not
    have are skipped, but their versions are remembered."""
    seen: dict[str, int] = {"k0": 3}
    states = [
        SharedState("k0", KeyState.PAYMENT_REQUIRED, "r", "other", 3),
        SharedState("k1", KeyState.PAYMENT_REQUIRED, "r", "other", 4),
        SharedState("k2", KeyState.UNAUTHORIZED, "r", "me", 5),
        SharedState("zz", KeyState.UNAUTHORIZED, "r", "other", 6),
    ]
    got = to_adopt(states, seen, {"k0", "k1", "k2"}, "me")
    assert [s.alias for s in got] == ["k1"]
    assert seen == {"k0": 3, "k1": 4, "k2": 5}
    assert to_adopt(states, seen, {"k0", "k1", "k2"}, "me") == []
