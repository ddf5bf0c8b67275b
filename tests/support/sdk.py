"""The official AssemblyAI Python SDK as a client of the gateway, its events recorded."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from assemblyai.streaming.v3 import (
    StreamingClient,
    StreamingClientOptions,
    StreamingEvents,
    StreamingParameters,
)

from tests.support.wsclient import WAIT


@dataclass
class Recorder:
    events: list[tuple[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def handler(self, name: str) -> Any:
        def record(_client: Any, event: Any) -> None:
            with self.changed:
                self.events.append((name, event))
                self.changed.notify_all()

        return record

    def of(self, name: str) -> list[Any]:
        return [event for kind, event in self.events if kind == name]

    def wait_for(self, predicate: Any, timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout=timeout)


def sdk_client(url: str, key: str, recorder: Recorder) -> StreamingClient:
    client = StreamingClient(StreamingClientOptions(api_key=key, api_host=url, connect_timeout=5.0))
    for event in StreamingEvents:
        client.on(event, recorder.handler(event.name))
    return client


PARAMS = StreamingParameters(
    sample_rate=16000, format_turns=True, speech_model="universal-streaming-english"
)
