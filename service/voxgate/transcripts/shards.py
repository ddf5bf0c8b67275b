"""Where a session's transcripts go in Redis: the stream shard and the live channels.

Pure. With one Redis (or Sentinel) and one shard, the names are those voxgate has
always used: the stream ``voxgate:transcripts``, the channels
``voxgate:session:<id>`` and ``voxgate:tag:<client>:<tag>`` (``PUBLISH``). With N shards the
stream is N keys ``voxgate:transcripts:{sK}``, K = :func:`shard_of` the session id, so
that no single Redis node carries every write. On a Redis Cluster the live channels
are sharded channels (``SPUBLISH``: delivered by the node that owns the channel's
slot, not broadcast to every node) carrying the shard's hash tag, so that one
script call per shard writes the stream and publishes, all in one slot:

* ``voxgate:session:{sK}:<id>``: one session;
* ``voxgate:tag:{sK}:<client>:<tag>``: the client's sessions with that tag whose id
  falls in shard K (a consumer of a tag subscribes on every shard);
* ``voxgate:live:{sK}``: every envelope of shard K (sharded pub/sub has no patterns;
  a consumer of everything subscribes on every shard).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

STREAM_KEY = "voxgate:transcripts"
SESSION_CHANNEL = "voxgate:session:{}"
#: A tagged session's channel: ``.format(client, tag)``. The client is the name of the
#: client key that opened the session (for a temporary token, the one that minted it);
#: names have no ``:``, so the client part is unambiguous.
TAG_CHANNEL = "voxgate:tag:{}:{}"
LIVE_CHANNEL = "voxgate:live:{}"


def shard_of(session_id: str, shards: int) -> int:
    """The session's shard: CRC-32 (zlib's, as in gzip) of its UTF-8 id, modulo N."""
    return zlib.crc32(session_id.encode(errors="backslashreplace")) % shards


@dataclass(frozen=True, slots=True)
class ShardLayout:
    shards: int = 1
    #: A Redis Cluster: hash-tagged channels and SPUBLISH.
    cluster: bool = False

    @property
    def sharded(self) -> bool:
        """Whether names carry a shard tag (else the historical single-stream names)."""
        return self.shards > 1 or self.cluster

    @property
    def publish_command(self) -> str:
        return "SPUBLISH" if self.cluster else "PUBLISH"

    def tag(self, shard: int) -> str:
        return f"{{s{shard}}}"

    def stream_key(self, shard: int) -> str:
        return f"{STREAM_KEY}:{self.tag(shard)}" if self.sharded else STREAM_KEY

    def stream_keys(self) -> list[str]:
        return [self.stream_key(k) for k in range(self.shards)]

    def shard(self, session_id: str) -> int:
        return shard_of(session_id, self.shards) if self.sharded else 0

    def session_channel(self, session_id: str) -> str:
        if self.cluster:
            return SESSION_CHANNEL.format(f"{self.tag(self.shard(session_id))}:{session_id}")
        return SESSION_CHANNEL.format(session_id)

    def tag_channel(self, client: str, tag: str, shard: int) -> str:
        """The channel of ``client``'s sessions tagged ``tag`` in ``shard`` (the shard
        matters on a cluster only)."""
        if self.cluster:
            return TAG_CHANNEL.format(f"{self.tag(shard)}:{client}", tag)
        return TAG_CHANNEL.format(client, tag)

    def tag_channels(self, client: str, tag: str) -> list[str]:
        """Every channel a consumer of ``client``'s ``tag`` follows."""
        if not self.cluster:
            return [TAG_CHANNEL.format(client, tag)]
        return [self.tag_channel(client, tag, k) for k in range(self.shards)]

    def live_channels(self) -> list[str]:
        """On a cluster, the per-shard channels that carry every envelope."""
        return [LIVE_CHANNEL.format(self.tag(k)) for k in range(self.shards)]

    def channels(self, session_id: str, client: str, tag: str | None) -> list[str]:
        """Where one session's envelopes are published."""
        shard = self.shard(session_id)
        out = [self.session_channel(session_id)]
        if tag:
            out.append(self.tag_channel(client, tag, shard))
        if self.cluster:
            out.append(LIVE_CHANNEL.format(self.tag(shard)))
        return out
