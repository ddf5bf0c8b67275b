"""Settings from the environment, and client authentication against digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from voxgate.access.clientkeys import ClientAuthenticator
from voxgate.protocol import ProtocolViolation, Violation
from voxgate.settings import Settings, SettingsError, fingerprint

BASE = {"VOXGATE_UPSTREAM_KEYS": "main=aai-secret", "VOXGATE_CLIENT_KEYS": "web=s3cret"}


def test_defaults_follow_the_configuration_contract() -> None:
    """Unset variables take the documented defaults."""
    s = Settings.from_env(BASE)
    assert s.upstream_url == "wss://streaming.assemblyai.com/v3/ws"
    assert s.port == 8080
    assert s.redis_url is None
    assert [k.alias for k in s.upstream_keys] == ["main"]
    assert s.pace_burst_seconds == 60.0  # generous: AssemblyAI's own pace rule is upstream's


def test_keys_never_show_their_secret_in_repr() -> None:
    """repr() of the settings (what a traceback or log might print) hides every secret."""
    s = Settings.from_env({**BASE, "VOXGATE_UPSTREAM_KEYS": "a=aai-1,aai-2"})
    text = repr(s)
    assert "aai-1" not in text and "aai-2" not in text and "s3cret" not in text
    assert s.upstream_keys[1].alias == fingerprint("aai-2")
    assert s.upstream_keys[1].alias.startswith("key-")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VOXGATE_UPSTREAM_KEYS": ""}, "VOXGATE_UPSTREAM_KEYS"),
        ({"VOXGATE_UPSTREAM_KEYS": "a=x,a=y"}, "VOXGATE_UPSTREAM_KEYS"),
        ({"VOXGATE_UPSTREAM_KEYS": "bad alias!=x"}, "VOXGATE_UPSTREAM_KEYS"),
        ({"VOXGATE_CLIENT_KEYS": "nosecret"}, "VOXGATE_CLIENT_KEYS"),
        ({"VOXGATE_CLIENT_KEYS": "a=sha256:zz"}, "VOXGATE_CLIENT_KEYS"),
        ({"VOXGATE_CLIENT_KEYS": ""}, "VOXGATE_CLIENT_KEYS"),
        ({"VOXGATE_PORT": "eighty"}, "VOXGATE_PORT"),
        ({"VOXGATE_PORT": "70000"}, "VOXGATE_PORT"),
        ({"VOXGATE_UPSTREAM_URL": "http://x"}, "VOXGATE_UPSTREAM_URL"),
        ({"VOXGATE_DRAIN_TIMEOUT": "-1"}, "VOXGATE_DRAIN_TIMEOUT"),
        ({"VOXGATE_IDLE_TIMEOUT": "0"}, "VOXGATE_IDLE_TIMEOUT"),
        ({"VOXGATE_LOG_FORMAT": "xml"}, "VOXGATE_LOG_FORMAT"),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(env: dict[str, str], variable: str) -> None:
    """Each malformed variable raises SettingsError whose message names it."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, **env})
    assert variable in str(caught.value)


def test_client_keys_authenticate_by_digest_and_accept_stored_hashes() -> None:
    """A plain secret and a sha256: digest both work; the name is returned."""
    digest = hashlib.sha256(b"other-secret").hexdigest()
    s = Settings.from_env({**BASE, "VOXGATE_CLIENT_KEYS": f"web=s3cret,batch=sha256:{digest}"})
    auth = ClientAuthenticator(s.client_keys)
    assert auth.authenticate({"authorization": "s3cret"}, {}) == "web"
    assert auth.authenticate({}, {"token": "other-secret"}) == "batch"
    assert auth.authenticate({"authorization": "Bearer s3cret"}, {}) == "web"


def test_missing_and_wrong_client_keys_are_1008_with_distinct_reasons() -> None:
    """No key and a wrong key are both 1008, labelled differently for the metric."""
    auth = ClientAuthenticator(Settings.from_env(BASE).client_keys)
    with pytest.raises(ProtocolViolation) as missing:
        auth.authenticate({}, {})
    assert missing.value.code == 1008 and missing.value.violation is Violation.MISSING_KEY
    with pytest.raises(ProtocolViolation) as wrong:
        auth.authenticate({"authorization": "s3cre"}, {})
    assert wrong.value.code == 1008 and wrong.value.violation is Violation.INVALID_KEY
    assert "s3cre" not in wrong.value.reason


def test_shared_pool_is_on_by_default_and_can_be_turned_off() -> None:
    """VOXGATE_SHARED_POOL defaults to true (it takes effect only with VOXGATE_REDIS_URL),
    accepts false, and refuses anything else naming the variable."""
    assert Settings.from_env(BASE).shared_pool is True
    assert Settings.from_env({**BASE, "VOXGATE_SHARED_POOL": "False"}).shared_pool is False
    with pytest.raises(SettingsError, match="VOXGATE_SHARED_POOL"):
        Settings.from_env({**BASE, "VOXGATE_SHARED_POOL": "maybe"})


def test_websocket_message_bounds_settings() -> None:
    """VOXGATE_WS_MESSAGE_TIMEOUT (10 s) and VOXGATE_WS_MAX_FRAGMENTS (unset or 0: the
    codec's default for the size limit) are read; a negative count names its variable."""
    s = Settings.from_env(BASE)
    assert s.ws_message_timeout == 10.0 and s.ws_max_fragments is None
    s = Settings.from_env(
        {**BASE, "VOXGATE_WS_MESSAGE_TIMEOUT": "2.5", "VOXGATE_WS_MAX_FRAGMENTS": "64"}
    )
    assert s.ws_message_timeout == 2.5 and s.ws_max_fragments == 64
    assert Settings.from_env({**BASE, "VOXGATE_WS_MAX_FRAGMENTS": "0"}).ws_max_fragments is None
    with pytest.raises(SettingsError, match="VOXGATE_WS_MAX_FRAGMENTS"):
        Settings.from_env({**BASE, "VOXGATE_WS_MAX_FRAGMENTS": "-1"})


def test_idle_timeout_defaults_to_a_minute() -> None:
    """VOXGATE_IDLE_TIMEOUT: 60 s unless set (seconds, more than 0)."""
    assert Settings.from_env(BASE).idle_timeout == 60.0
    assert Settings.from_env({**BASE, "VOXGATE_IDLE_TIMEOUT": "2.5"}).idle_timeout == 2.5


def test_tls_needs_both_files_readable_and_a_matching_pair(tmp_path: Path) -> None:
    """VOXGATE_TLS_CERT and VOXGATE_TLS_KEY: neither (plain), both (TLS); one alone or a
    missing file fails at start naming the variables; a key that is not the
    certificate's fails when the context is built (voxgate serve exits 2)."""
    from voxgate.edge.tls import TlsError, self_signed, server_context

    assert Settings.from_env(BASE).tls is False
    cert, key = self_signed(tmp_path)
    on = Settings.from_env({**BASE, "VOXGATE_TLS_CERT": str(cert), "VOXGATE_TLS_KEY": str(key)})
    assert on.tls and on.tls_cert == str(cert)
    server_context(str(cert), str(key))
    with pytest.raises(SettingsError, match="VOXGATE_TLS_CERT and VOXGATE_TLS_KEY"):
        Settings.from_env({**BASE, "VOXGATE_TLS_CERT": str(cert)})
    with pytest.raises(SettingsError, match="VOXGATE_TLS_KEY"):
        Settings.from_env(
            {**BASE, "VOXGATE_TLS_CERT": str(cert), "VOXGATE_TLS_KEY": str(tmp_path / "none")}
        )
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = self_signed(other)
    with pytest.raises(TlsError, match="VOXGATE_TLS_CERT"):
        server_context(str(cert), str(other_key))
