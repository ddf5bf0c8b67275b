"""Gateway settings: one typed object, built once from the environment.

Nothing else in the package reads ``os.environ``. A bad value fails at start with
a :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from voxgate.access.origins import normalize_origin
from voxgate.protocol import DEFAULT_PACE_BURST_SECONDS
from voxgate.redis_client import RedisTopology

DEFAULT_UPSTREAM_URL = "wss://streaming.assemblyai.com/v3/ws"
DEFAULT_PORT = 8080
#: Deadline for the upstream TCP+TLS+WebSocket handshake.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Deadline for upstream's Begin once the socket is open.
DEFAULT_BEGIN_TIMEOUT = 10.0
#: Deadline between our Terminate and upstream's Termination (final turns come first).
DEFAULT_TERMINATE_TIMEOUT = 10.0
#: Deadline for one send to either side before the peer is declared stuck.
DEFAULT_SEND_TIMEOUT = 10.0
#: Seconds a client's fragmented WebSocket message may take from first to last frame.
DEFAULT_WS_MESSAGE_TIMEOUT = 10.0
#: A session whose client sends no audio (nor any other message) for this long is
#: ended cleanly (Terminate upstream, its final turns and Termination relayed, then
#: close 3006): an abandoned connection must not hold a key slot nor be billed.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Failover at connect: the whole search for a working key must end by then.
DEFAULT_FAILOVER_TIMEOUT = 15.0
#: Per-key caps. AssemblyAI limits new sessions per minute per account (free: 5).
DEFAULT_KEY_MAX_SESSIONS = 100
DEFAULT_KEY_SESSIONS_PER_MINUTE = 100
#: Envelopes held in memory while Redis is slow or down (a few KB each).
DEFAULT_REDIS_BACKLOG = 10_000
#: Approximate length cap of the Redis stream of transcripts.
DEFAULT_STREAM_MAXLEN = 100_000
#: Transcript stream shards on a Redis Cluster when VOXGATE_STREAM_SHARDS is not set
#: (several per primary, so that every primary carries some; one Redis: one stream).
DEFAULT_CLUSTER_STREAM_SHARDS = 16
#: WAIT's deadline for a write that matters (VOXGATE_REDIS_WAIT_TIMEOUT).
DEFAULT_REDIS_WAIT_TIMEOUT = 0.5
#: On SIGTERM, how long running sessions may go on before they are ended for them.
DEFAULT_DRAIN_TIMEOUT = 30.0
#: Audio kept per session to replay to a replacement upstream after a mid-session
#: drop (the turn in progress). 2 s of 16 kHz PCM is 64 KB; it stays within the
#: burst upstream accepts ahead of real time.
DEFAULT_REPLAY_SECONDS = 2.0
#: How far ahead of real time, from its Begin, a replacement upstream may be sent audio
#: (at least the pace burst): the replay plus the audio queued meanwhile catch up
#: within it (AssemblyAI was seen taking ~310 s of look-ahead; the simulator takes 3 s).
DEFAULT_REPLACEMENT_BURST_SECONDS = 3.0
#: A key that needs billing is probed this long after the 402 (an upgrade takes
#: 1-2 minutes to reach upstream), then every PROBE_INTERVAL until it works.
DEFAULT_PROBE_DELAY = 30.0
DEFAULT_PROBE_INTERVAL = 60.0
#: Largest message taken from upstream. The official SDKs take 1 MiB (Python) and
#: 100 MiB (Node); a long diarized call's final SpeakerRevision can pass 512 KB. A
#: session holds at most ``UPSTREAM_QUEUE_FRAMES`` messages from upstream, so this
#: times that bounds its memory from upstream (docs/operations.md).
DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The request head (request line and headers) a client may send, and its header count.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_HEADERS = 100
#: From TCP accept to a complete request head (then the 101 or the HTTP answer).
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: Open connections per process (also capped by the descriptor limit: see docs/limits.md).
DEFAULT_MAX_CONNECTIONS = 10_000
#: Connections accepted whose request head is not in yet.
DEFAULT_MAX_HANDSHAKES = 1_000
DEFAULT_MAX_BODY_BYTES = 65_536
#: A session that sends no audio this long is ended (KeepAlive does not count).
DEFAULT_NO_AUDIO_TIMEOUT = 300.0
#: A client text message (KeepAlive, UpdateConfiguration, ...) over this many
#: characters closes the session with 1009 (AssemblyAI's own cap is 128 KB a message).
DEFAULT_MAX_CONTROL_CHARS = 65_536
#: Client text messages a session may send per second (the same again as a burst).
DEFAULT_MAX_CONTROL_RATE = 20

#: AssemblyAI's list price of streaming, USD per hour (2026): the default estimate.
DEFAULT_PRICE_PER_HOUR = 0.15
DEFAULT_BUDGET_ALERT_SHARE = 0.8

#: The per-client limits (voxgate.tenants.records.Limits), as VOXGATE_CLIENT_LIMITS names them.
CLIENT_LIMIT_NAMES = (
    "max_sessions",
    "sessions_per_minute",
    "audio_hours_per_day",
    "audio_hours_per_month",
)

#: A shared token secret must be at least this long (HMAC-SHA256 keys: 32 bytes is ideal).
MIN_TOKEN_SECRET_CHARS = 32

_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """A server-side AssemblyAI key. ``repr`` and ``alias`` never show the secret."""

    alias: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientKey:
    """An operator-issued client key, kept only as its SHA-256 digest."""

    name: str
    digest: bytes = field(repr=False)
    #: Unix time after which the key no longer works (keys managed through the admin API).
    expires_at: float | None = None


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a secret (for logs and metrics)."""
    return "key-" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def digest_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class Settings:
    upstream_url: str = DEFAULT_UPSTREAM_URL
    upstream_keys: tuple[UpstreamKey, ...] = ()
    client_keys: tuple[ClientKey, ...] = ()
    redis_url: str | None = None
    #: Where Redis is: one server, Sentinel or Cluster (None: no Redis).
    redis: RedisTopology | None = None
    #: Transcript stream shards (1: the one stream ``voxgate:transcripts``).
    stream_shards: int = 1
    admin_key: str | None = field(default=None, repr=False)
    redis_backlog: int = DEFAULT_REDIS_BACKLOG
    stream_maxlen: int = DEFAULT_STREAM_MAXLEN
    stream_partials: bool = False
    shared_pool: bool = True
    instance: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    begin_timeout: float = DEFAULT_BEGIN_TIMEOUT
    terminate_timeout: float = DEFAULT_TERMINATE_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    ws_message_timeout: float = DEFAULT_WS_MESSAGE_TIMEOUT
    #: Frames one client message may come in; None: one per 128 bytes of its size limit.
    ws_max_fragments: int | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    #: Seconds between SIGTERM and SIGKILL that the runtime gives (voxgate.shutdown fits
    #: the drain into them). None: not declared, the drain takes drain_timeout.
    stop_timeout: float | None = None
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT
    key_max_sessions: int = DEFAULT_KEY_MAX_SESSIONS
    key_sessions_per_minute: int = DEFAULT_KEY_SESSIONS_PER_MINUTE
    pace_burst_seconds: float = DEFAULT_PACE_BURST_SECONDS
    replay_seconds: float = DEFAULT_REPLAY_SECONDS
    replacement_burst_seconds: float = DEFAULT_REPLACEMENT_BURST_SECONDS
    probe_delay: float = DEFAULT_PROBE_DELAY
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    upstream_max_message_bytes: int = DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES
    log_format: str = "auto"
    log_level: str = "info"
    #: Signs temporary tokens. Unset: random per process, so tokens work only on the
    #: replica that minted them; replicas behind one address need a shared one.
    token_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    allowed_origins: tuple[str, ...] = ()
    demo_client: str | None = None
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    #: Client limits while Redis is unreachable: "open" admits, "closed" refuses (1013).
    limits_on_redis_down: str = "open"
    #: Estimated cost: USD per hour of upstream session, by model ("default": the rest).
    prices: tuple[tuple[str, float], ...] = (("default", DEFAULT_PRICE_PER_HOUR),)
    #: Share of an upstream key's budget at which its alert fires (per key: the admin API).
    budget_alert_share: float = DEFAULT_BUDGET_ALERT_SHARE
    #: Limits of clients without a record in Redis: (client, limit, value).
    client_limits: tuple[tuple[str, str, float], ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: A second listener for /healthz, /readyz, /metrics only (None: none).
    probe_port: int | None = None
    no_audio_timeout: float = DEFAULT_NO_AUDIO_TIMEOUT
    max_control_chars: int = DEFAULT_MAX_CONTROL_CHARS
    max_control_rate: int = DEFAULT_MAX_CONTROL_RATE
    #: PEM certificate (chain) and private key: set both and the gateway serves wss://
    #: and https:// on its port (docs/deployment.md, "TLS"); neither: plain ws:// and http://.
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        reader = _Reader(source)
        settings = cls(
            upstream_url=reader.url("VOXGATE_UPSTREAM_URL", DEFAULT_UPSTREAM_URL),
            upstream_keys=parse_upstream_keys(reader.text("VOXGATE_UPSTREAM_KEYS", "")),
            client_keys=parse_client_keys(reader.text("VOXGATE_CLIENT_KEYS", "")),
            redis_url=reader.text("VOXGATE_REDIS_URL", "") or None,
            redis=read_redis(source),
            stream_shards=read_stream_shards(source),
            admin_key=reader.text("VOXGATE_ADMIN_KEY", "") or None,
            redis_backlog=reader.integer(
                "VOXGATE_REDIS_BACKLOG", DEFAULT_REDIS_BACKLOG, 1, 10_000_000
            ),
            stream_maxlen=reader.integer(
                "VOXGATE_STREAM_MAXLEN", DEFAULT_STREAM_MAXLEN, 1, 1_000_000_000
            ),
            stream_partials=reader.choice("VOXGATE_STREAM_PARTIALS", "false", ("true", "false"))
            == "true",
            shared_pool=reader.choice("VOXGATE_SHARED_POOL", "true", ("true", "false")) == "true",
            instance=reader.text("VOXGATE_INSTANCE", "") or None,
            host=reader.text("VOXGATE_HOST", "127.0.0.1"),
            port=reader.integer("VOXGATE_PORT", DEFAULT_PORT, 0, 65535),
            connect_timeout=reader.seconds("VOXGATE_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
            begin_timeout=reader.seconds("VOXGATE_BEGIN_TIMEOUT", DEFAULT_BEGIN_TIMEOUT),
            terminate_timeout=reader.seconds(
                "VOXGATE_TERMINATE_TIMEOUT", DEFAULT_TERMINATE_TIMEOUT
            ),
            send_timeout=reader.seconds("VOXGATE_SEND_TIMEOUT", DEFAULT_SEND_TIMEOUT),
            ws_message_timeout=reader.seconds(
                "VOXGATE_WS_MESSAGE_TIMEOUT", DEFAULT_WS_MESSAGE_TIMEOUT
            ),
            ws_max_fragments=reader.integer("VOXGATE_WS_MAX_FRAGMENTS", 0, 0, 10_000_000) or None,
            idle_timeout=reader.seconds("VOXGATE_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT),
            drain_timeout=reader.seconds("VOXGATE_DRAIN_TIMEOUT", DEFAULT_DRAIN_TIMEOUT),
            stop_timeout=reader.seconds("VOXGATE_STOP_TIMEOUT", 1.0)
            if reader.text("VOXGATE_STOP_TIMEOUT", "")
            else None,
            failover_timeout=reader.seconds("VOXGATE_FAILOVER_TIMEOUT", DEFAULT_FAILOVER_TIMEOUT),
            key_max_sessions=reader.integer(
                "VOXGATE_KEY_MAX_SESSIONS", DEFAULT_KEY_MAX_SESSIONS, 1, 100_000
            ),
            key_sessions_per_minute=reader.integer(
                "VOXGATE_KEY_SESSIONS_PER_MINUTE", DEFAULT_KEY_SESSIONS_PER_MINUTE, 1, 100_000
            ),
            pace_burst_seconds=reader.seconds(
                "VOXGATE_PACE_BURST_SECONDS", DEFAULT_PACE_BURST_SECONDS
            ),
            replay_seconds=reader.seconds("VOXGATE_REPLAY_SECONDS", DEFAULT_REPLAY_SECONDS),
            replacement_burst_seconds=reader.seconds(
                "VOXGATE_REPLACEMENT_BURST_SECONDS", DEFAULT_REPLACEMENT_BURST_SECONDS
            ),
            probe_delay=reader.seconds("VOXGATE_PROBE_DELAY", DEFAULT_PROBE_DELAY),
            probe_interval=reader.seconds("VOXGATE_PROBE_INTERVAL", DEFAULT_PROBE_INTERVAL),
            upstream_max_message_bytes=reader.integer(
                "VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES",
                DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES,
                1024 * 1024,
                1024 * 1024 * 1024,
            ),
            log_format=reader.choice("VOXGATE_LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=reader.choice(
                "VOXGATE_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ),
            token_secret=_token_secret(reader.text("VOXGATE_TOKEN_SECRET", "")),
            allowed_origins=_origins(reader.text("VOXGATE_ALLOWED_ORIGINS", "")),
            demo_client=reader.text("VOXGATE_DEMO_CLIENT", "") or None,
            max_header_bytes=reader.integer(
                "VOXGATE_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, 1024, 1024 * 1024
            ),
            max_headers=reader.integer("VOXGATE_MAX_HEADERS", DEFAULT_MAX_HEADERS, 10, 10_000),
            handshake_timeout=reader.seconds(
                "VOXGATE_HANDSHAKE_TIMEOUT", DEFAULT_HANDSHAKE_TIMEOUT
            ),
            max_connections=reader.integer(
                "VOXGATE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1, 10_000_000
            ),
            max_handshakes=reader.integer(
                "VOXGATE_MAX_HANDSHAKES", DEFAULT_MAX_HANDSHAKES, 1, 10_000_000
            ),
            limits_on_redis_down=reader.choice(
                "VOXGATE_LIMITS_ON_REDIS_DOWN", "open", ("open", "closed")
            ),
            prices=parse_prices(reader.text("VOXGATE_PRICES", "")),
            budget_alert_share=reader.share(
                "VOXGATE_BUDGET_ALERT_SHARE", DEFAULT_BUDGET_ALERT_SHARE
            ),
            client_limits=parse_client_limits(reader.text("VOXGATE_CLIENT_LIMITS", "")),
            probe_port=(
                reader.integer("VOXGATE_PROBE_PORT", 0, 0, 65535)
                if reader.text("VOXGATE_PROBE_PORT", "")
                else None
            ),
            max_body_bytes=reader.integer(
                "VOXGATE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, 64 * 1024 * 1024
            ),
            no_audio_timeout=reader.seconds("VOXGATE_NO_AUDIO_TIMEOUT", DEFAULT_NO_AUDIO_TIMEOUT),
            max_control_chars=reader.integer(
                "VOXGATE_MAX_CONTROL_CHARS", DEFAULT_MAX_CONTROL_CHARS, 1024, 16 * 1024 * 1024
            ),
            max_control_rate=reader.integer(
                "VOXGATE_MAX_CONTROL_RATE", DEFAULT_MAX_CONTROL_RATE, 1, 100_000
            ),
            tls_cert=reader.file("VOXGATE_TLS_CERT"),
            tls_key=reader.file("VOXGATE_TLS_KEY"),
        )
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise SettingsError(
                "VOXGATE_TLS_CERT and VOXGATE_TLS_KEY go together: set both "
                "(a PEM certificate and its private key) or neither"
            )
        if settings.demo_client is not None and settings.demo_client not in {
            k.name for k in settings.client_keys
        }:
            raise SettingsError(
                f"VOXGATE_DEMO_CLIENT: {settings.demo_client[:40]!r} is not a client name "
                "of VOXGATE_CLIENT_KEYS"
            )
        if not settings.upstream_keys:
            raise SettingsError(
                "VOXGATE_UPSTREAM_KEYS is empty: give at least one AssemblyAI key "
                "(comma-separated, each optionally alias=key)"
            )
        if not settings.client_keys and settings.redis is None:
            raise SettingsError(
                "VOXGATE_CLIENT_KEYS is empty: give at least one client key as name=secret "
                "(or give Redis, VOXGATE_REDIS_URL or Sentinel, and manage clients with "
                "/admin/clients)"
            )
        return settings


def read_redis(env: Mapping[str, str]) -> RedisTopology | None:
    """The Redis topology of ``VOXGATE_REDIS_URL``, ``VOXGATE_REDIS_SENTINELS`` +
    ``VOXGATE_REDIS_SENTINEL_MASTER`` and ``VOXGATE_REDIS_CLUSTER`` (None: no Redis);
    a contradiction names the variable. (``voxgate tail`` reads the same.)"""
    reader = _Reader(env)
    url = reader.text("VOXGATE_REDIS_URL", "") or None
    raw_sentinels = reader.text("VOXGATE_REDIS_SENTINELS", "")
    master = reader.text("VOXGATE_REDIS_SENTINEL_MASTER", "") or None
    cluster = reader.choice("VOXGATE_REDIS_CLUSTER", "false", ("true", "false")) == "true"
    wait_replicas = reader.integer("VOXGATE_REDIS_WAIT_REPLICAS", 0, 0, 16)
    wait_timeout = reader.seconds("VOXGATE_REDIS_WAIT_TIMEOUT", DEFAULT_REDIS_WAIT_TIMEOUT)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise SettingsError(
                "VOXGATE_REDIS_URL must be a redis://, rediss:// or unix:// URL, "
                f"got scheme {parts.scheme[:20]!r}"
            )
    sentinels = _sentinels(raw_sentinels)
    if sentinels and master is None:
        raise SettingsError(
            "VOXGATE_REDIS_SENTINEL_MASTER is empty: with VOXGATE_REDIS_SENTINELS, give "
            "the name the sentinels monitor"
        )
    if master is not None and not sentinels:
        raise SettingsError(
            "VOXGATE_REDIS_SENTINEL_MASTER is set but VOXGATE_REDIS_SENTINELS is empty: "
            "give the sentinels as host:port,host:port"
        )
    if cluster and sentinels:
        raise SettingsError(
            "VOXGATE_REDIS_CLUSTER=true and VOXGATE_REDIS_SENTINELS are both set: a Redis "
            "Cluster fails over by itself, choose one"
        )
    if cluster and url is None:
        raise SettingsError(
            "VOXGATE_REDIS_CLUSTER=true needs VOXGATE_REDIS_URL: the address of a seed node"
        )
    if cluster and url is not None:
        if url.startswith("unix:"):
            raise SettingsError("VOXGATE_REDIS_URL: a Redis Cluster is reached over TCP")
        if urlsplit(url).path.strip("/") not in ("", "0"):
            raise SettingsError(
                "VOXGATE_REDIS_URL: a Redis Cluster has only database 0, drop the /db"
            )
    if sentinels and url is not None and urlsplit(url).scheme != "redis":
        raise SettingsError(
            "VOXGATE_REDIS_URL: with VOXGATE_REDIS_SENTINELS it gives the password and db "
            "only, as redis://[:password@]host/db (TLS to Sentinel is not supported)"
        )
    if url is None and not sentinels:
        if reader.text("VOXGATE_REDIS_WAIT_REPLICAS", ""):
            raise SettingsError("VOXGATE_REDIS_WAIT_REPLICAS is set but no Redis is configured")
        return None
    return RedisTopology(
        url,
        sentinels=sentinels,
        sentinel_master=master,
        cluster=cluster,
        wait_replicas=wait_replicas,
        wait_timeout=wait_timeout,
    )


def read_stream_shards(env: Mapping[str, str]) -> int:
    """``VOXGATE_STREAM_SHARDS``: 1 by default, 16 on a Redis Cluster."""
    reader = _Reader(env)
    cluster = reader.text("VOXGATE_REDIS_CLUSTER", "").lower() == "true"
    default = DEFAULT_CLUSTER_STREAM_SHARDS if cluster else 1
    return reader.integer("VOXGATE_STREAM_SHARDS", default, 1, 1024)


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for item in _items(raw):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                f"VOXGATE_REDIS_SENTINELS: {item[:60]!r} is not host:port "
                "(give host:port,host:port,...)"
            )
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def parse_upstream_keys(raw: str) -> tuple[UpstreamKey, ...]:
    """``alias=key,key2`` -> keys; a key without alias is named by its fingerprint."""
    keys: list[UpstreamKey] = []
    for item in _items(raw):
        alias, sep, secret = item.partition("=")
        if not sep:
            alias, secret = fingerprint(item), item
        alias, secret = alias.strip(), secret.strip()
        if not secret:
            raise SettingsError(f"VOXGATE_UPSTREAM_KEYS: the key for alias {alias!r} is empty")
        if not _ALIAS_RE.match(alias):
            raise SettingsError(
                f"VOXGATE_UPSTREAM_KEYS: alias {alias[:40]!r} must be 1-40 of A-Z a-z 0-9 _ . -"
            )
        keys.append(UpstreamKey(alias, secret))
    _no_duplicates("VOXGATE_UPSTREAM_KEYS", [k.alias for k in keys])
    if len({k.secret for k in keys}) != len(keys):
        raise SettingsError("VOXGATE_UPSTREAM_KEYS: the same key is listed twice")
    return tuple(keys)


def parse_client_keys(raw: str) -> tuple[ClientKey, ...]:
    """``name=secret`` or ``name=sha256:<hex digest>`` (so the secret need not be stored)."""
    keys: list[ClientKey] = []
    for item in _items(raw):
        name, sep, secret = item.partition("=")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or not secret:
            raise SettingsError(
                f"VOXGATE_CLIENT_KEYS: expected name=secret, got an entry {name[:40]!r}"
            )
        if not _ALIAS_RE.match(name):
            raise SettingsError(
                f"VOXGATE_CLIENT_KEYS: name {name[:40]!r} must be 1-40 of A-Z a-z 0-9 _ . -"
            )
        if secret.startswith("sha256:"):
            try:
                digest = bytes.fromhex(secret.removeprefix("sha256:"))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise SettingsError(
                    f"VOXGATE_CLIENT_KEYS: {name}'s sha256: value is not 64 hex digits"
                )
        else:
            digest = digest_secret(secret)
        keys.append(ClientKey(name, digest))
    _no_duplicates("VOXGATE_CLIENT_KEYS", [k.name for k in keys])
    return tuple(keys)


def parse_prices(raw: str) -> tuple[tuple[str, float], ...]:
    """``0.15`` or ``default=0.15,u3-rt-pro=0.45``: USD per hour of upstream session."""
    prices: dict[str, float] = {"default": DEFAULT_PRICE_PER_HOUR}
    for item in _items(raw):
        model, sep, value = item.rpartition("=")
        model = model.strip() if sep else "default"
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not 0 <= price <= 100_000 or not re.match(r"^[A-Za-z0-9_.-]{1,60}$", model):
            raise SettingsError(
                f"VOXGATE_PRICES: expected model=USD per hour (0-100000), got {item[:60]!r}"
            )
        prices[model] = price
    return tuple(prices.items())


def parse_client_limits(raw: str) -> tuple[tuple[str, str, float], ...]:
    """``svc.max_sessions=5,svc.audio_hours_per_day=2``: limits of clients (a one-process
    set-up; with Redis, a client's record there replaces these)."""
    out: dict[tuple[str, str], float] = {}
    for item in _items(raw):
        target, sep, value = item.partition("=")
        name, dot, limit = target.strip().rpartition(".")
        try:
            number = float(value)
        except ValueError:
            number = 0.0
        whole = limit not in ("max_sessions", "sessions_per_minute") or number.is_integer()
        if (
            not sep
            or not dot
            or not _ALIAS_RE.match(name)
            or limit not in CLIENT_LIMIT_NAMES
            or not 0 < number <= 1_000_000
            or not whole
        ):
            raise SettingsError(
                "VOXGATE_CLIENT_LIMITS: expected client.limit=number with limit one of "
                f"{', '.join(CLIENT_LIMIT_NAMES)}, got {item[:60]!r}"
            )
        out[(name, limit)] = number
    return tuple((name, limit, number) for (name, limit), number in out.items())


def _token_secret(raw: str) -> bytes:
    if not raw:
        return secrets.token_bytes(32)
    if len(raw) < MIN_TOKEN_SECRET_CHARS:
        raise SettingsError(
            f"VOXGATE_TOKEN_SECRET must be at least {MIN_TOKEN_SECRET_CHARS} characters "
            "(e.g. the output of: openssl rand -hex 32)"
        )
    return raw.encode()


def _origins(raw: str) -> tuple[str, ...]:
    origins: list[str] = []
    for item in _items(raw):
        origin = normalize_origin(item)
        if origin is None:
            raise SettingsError(
                f"VOXGATE_ALLOWED_ORIGINS: {item[:80]!r} is not an origin like https://app.example.com"
            )
        origins.append(origin)
    return tuple(origins)


def _items(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _no_duplicates(variable: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SettingsError(f"{variable}: the name {name!r} is used twice")
        seen.add(name)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, default).strip()

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise SettingsError(f"{name} must be a ws:// or wss:// URL, got {value[:80]!r}")
        return value

    def file(self, name: str) -> str | None:
        """A path to a readable file, or None when the variable is unset or empty."""
        value = self.text(name, "")
        if not value:
            return None
        if not os.path.isfile(value) or not os.access(value, os.R_OK):
            raise SettingsError(f"{name}: {value[:200]!r} is not a readable file")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name, str(default))
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {value[:40]!r}") from None
        if not low <= number <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {number}")
        return number

    def seconds(self, name: str, default: float) -> float:
        value = self.text(name, str(default))
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number of seconds, got {value[:40]!r}") from None
        if not 0 < number <= 86_400:
            raise SettingsError(f"{name} must be more than 0 and at most 86400 seconds")
        return number

    def share(self, name: str, default: float) -> float:
        value = self.text(name, str(default))
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number <= 1:
            raise SettingsError(f"{name} must be more than 0 and at most 1, got {value[:40]!r}")
        return number

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value[:40]!r}")
        return value
