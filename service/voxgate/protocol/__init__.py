"""The AssemblyAI Universal Streaming (v3) wire protocol, as pure logic (no I/O).

The gateway validates only what protects it or is certain (``gateway_params``,
``client_text``, frame sizes, pace); AssemblyAI answers for everything else. The strict
readings (``parse_stream_params``, ``parse_control``) are the simulator's until it has
its own checks (issue 16). Each rule failure is
a :class:`ProtocolViolation` carrying the close code AssemblyAI sends for it and a
``Violation`` label (a closed enum, safe as a metric label value).

See ``../shared/PROTOCOL.md`` for the protocol itself.

Modules: ``errors`` (close codes, violations), ``params`` (the connection request),
``audio`` (frames and pace), ``messages`` (client text messages), ``jsonguard`` (JSON
parsed with a bound on depth and size, for whatever a peer sends). Their public names
are importable from here.
"""

from voxgate.protocol.audio import (
    DEFAULT_PACE_BURST_SECONDS,
    MAX_CHUNK_MS,
    MIN_CHUNK_MS,
    PaceGuard,
    check_audio_frame,
)
from voxgate.protocol.errors import (
    MAX_CLOSE_REASON_BYTES,
    CloseCode,
    ProtocolViolation,
    Violation,
    truncate_reason,
)
from voxgate.protocol.jsonguard import MAX_JSON_DEPTH, UnsafeJson, loads_bounded
from voxgate.protocol.messages import (
    MAX_MESSAGE_BYTES,
    ControlType,
    client_text,
    parse_control,
    read_client_text,
)
from voxgate.protocol.params import (
    AUTH_PARAMS,
    BYTES_PER_SAMPLE,
    GATEWAY_MAX_QUERY_PARAMS,
    GATEWAY_MAX_VALUE_CHARS,
    GATEWAY_PARAM_PREFIX,
    MAX_BYTES_PER_SECOND,
    MAX_PARAM_VALUE_CHARS,
    MAX_QUERY_PARAMS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    TAG_PARAM,
    TAG_PATTERN,
    Encoding,
    StreamParams,
    check_param,
    gateway_params,
    parse_bool,
    parse_stream_params,
)

__all__ = [
    "AUTH_PARAMS",
    "BYTES_PER_SAMPLE",
    "DEFAULT_PACE_BURST_SECONDS",
    "GATEWAY_MAX_QUERY_PARAMS",
    "GATEWAY_MAX_VALUE_CHARS",
    "GATEWAY_PARAM_PREFIX",
    "MAX_BYTES_PER_SECOND",
    "MAX_CHUNK_MS",
    "MAX_CLOSE_REASON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_PARAM_VALUE_CHARS",
    "MAX_QUERY_PARAMS",
    "MAX_SAMPLE_RATE",
    "MIN_CHUNK_MS",
    "MIN_SAMPLE_RATE",
    "TAG_PARAM",
    "TAG_PATTERN",
    "CloseCode",
    "ControlType",
    "Encoding",
    "PaceGuard",
    "ProtocolViolation",
    "StreamParams",
    "UnsafeJson",
    "Violation",
    "check_audio_frame",
    "check_param",
    "client_text",
    "gateway_params",
    "loads_bounded",
    "parse_bool",
    "parse_control",
    "parse_stream_params",
    "read_client_text",
    "truncate_reason",
]
