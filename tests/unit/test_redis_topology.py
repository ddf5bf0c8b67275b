"""Redis topologies, pure: the settings that choose one (and the combinations that stop
the gateway, naming the variable), the transcript shards and channel names, the pool's
key names on a cluster, and the compose Sentinel variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from voxgate.keys.layout import pool_keys
from voxgate.settings import Settings, SettingsError
from voxgate.transcripts.shards import ShardLayout, shard_of

ROOT = Path(__file__).resolve().parents[2]
BASE = {"VOXGATE_UPSTREAM_KEYS": "main=aai-secret", "VOXGATE_CLIENT_KEYS": "web=s3cret"}


def test_one_redis_is_unchanged() -> None:
    s = Settings.from_env({**BASE, "VOXGATE_REDIS_URL": "redis://r:6379/0"})
    assert s.redis is not None and s.redis.kind == "single"
    assert s.redis.url == "redis://r:6379/0" and s.redis.wait_replicas == 0
    assert s.stream_shards == 1
    assert Settings.from_env(BASE).redis is None


def test_sentinel_and_cluster_are_chosen_by_their_variables() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "VOXGATE_REDIS_SENTINELS": "s1:26379, s2:26379,s3:26380",
            "VOXGATE_REDIS_SENTINEL_MASTER": "voxgate",
            "VOXGATE_REDIS_URL": "redis://:pw@ignored/2",
            "VOXGATE_REDIS_WAIT_REPLICAS": "1",
            "VOXGATE_REDIS_WAIT_TIMEOUT": "0.25",
        }
    )
    assert s.redis is not None and s.redis.kind == "sentinel"
    assert s.redis.sentinels == (("s1", 26379), ("s2", 26379), ("s3", 26380))
    assert (s.redis.wait_replicas, s.redis.wait_timeout) == (1, 0.25)
    assert "pw" not in s.redis.describe()
    c = Settings.from_env(
        {**BASE, "VOXGATE_REDIS_URL": "redis://seed:7000", "VOXGATE_REDIS_CLUSTER": "true"}
    )
    assert c.redis is not None and c.redis.kind == "cluster" and c.stream_shards == 16


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VOXGATE_REDIS_SENTINELS": "s1:26379"}, "VOXGATE_REDIS_SENTINEL_MASTER"),
        ({"VOXGATE_REDIS_SENTINEL_MASTER": "m"}, "VOXGATE_REDIS_SENTINELS"),
        (
            {"VOXGATE_REDIS_SENTINELS": "s1", "VOXGATE_REDIS_SENTINEL_MASTER": "m"},
            "VOXGATE_REDIS_SENTINELS",
        ),
        ({"VOXGATE_REDIS_CLUSTER": "true"}, "VOXGATE_REDIS_URL"),
        (
            {
                "VOXGATE_REDIS_CLUSTER": "true",
                "VOXGATE_REDIS_URL": "redis://seed:7000",
                "VOXGATE_REDIS_SENTINELS": "s1:26379",
                "VOXGATE_REDIS_SENTINEL_MASTER": "m",
            },
            "VOXGATE_REDIS_CLUSTER",
        ),
        (
            {"VOXGATE_REDIS_CLUSTER": "true", "VOXGATE_REDIS_URL": "redis://seed:7000/3"},
            "VOXGATE_REDIS_URL",
        ),
        (
            {"VOXGATE_REDIS_CLUSTER": "yes", "VOXGATE_REDIS_URL": "redis://seed"},
            "VOXGATE_REDIS_CLUSTER",
        ),
        ({"VOXGATE_REDIS_URL": "http://r:6379"}, "VOXGATE_REDIS_URL"),
        ({"VOXGATE_REDIS_WAIT_REPLICAS": "1"}, "VOXGATE_REDIS_WAIT_REPLICAS"),
        (
            {"VOXGATE_REDIS_URL": "redis://r", "VOXGATE_REDIS_WAIT_REPLICAS": "-1"},
            "VOXGATE_REDIS_WAIT_REPLICAS",
        ),
        ({"VOXGATE_REDIS_URL": "redis://r", "VOXGATE_STREAM_SHARDS": "0"}, "VOXGATE_STREAM_SHARDS"),
    ],
)
def test_a_bad_combination_stops_the_gateway_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**BASE, **env})


def test_one_redis_keeps_the_historical_names() -> None:
    layout = ShardLayout()
    assert layout.stream_keys() == ["voxgate:transcripts"]
    assert layout.channels("abc", "web", "desk") == [
        "voxgate:session:abc",
        "voxgate:tag:web:desk",
    ]
    assert layout.publish_command == "PUBLISH"
    assert pool_keys(cluster=False).active("k") == "voxgate:pool:active:k"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the first non-empty {...}, else the whole key."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


def test_on_a_cluster_a_sessions_stream_and_channels_share_one_slot() -> None:
    layout = ShardLayout(16, cluster=True)
    for sid in ("abc", "a{b}c", "ünï", "x" * 200):
        shard = layout.shard(sid)
        names = [layout.stream_key(shard), *layout.channels(sid, "web", "desk")]
        assert {hash_tag(n) for n in names} == {f"s{shard}"}, names
    assert layout.publish_command == "SPUBLISH"
    assert len(layout.tag_channels("web", "desk")) == len(layout.live_channels()) == 16
    keys = pool_keys(cluster=True)
    names = [keys.instances, keys.states, keys.state_version, keys.active("a"), keys.starts("b")]
    assert {hash_tag(n) for n in names} == {"pool"}


def test_sessions_spread_over_the_shards() -> None:
    counts = [0] * 16
    for i in range(1600):
        counts[shard_of(f"session-{i}", 16)] += 1
    assert min(counts) > 50 and max(counts) < 150
    assert shard_of("abc", 16) == shard_of("abc", 16)


def test_the_compose_sentinel_variant_points_the_gateways_at_the_sentinels() -> None:
    base: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    override: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.sentinel.yml").read_text())
    services = override["services"]
    sentinels = [name for name in services if name.startswith("sentinel-")]
    assert len(sentinels) == 3 and "redis-replica" in services
    for name in ("voxgate-1", "voxgate-2"):
        assert name in base["services"]
        env = services[name]["environment"]
        assert env["VOXGATE_REDIS_URL"] == ""
        assert env["VOXGATE_REDIS_SENTINELS"] == ",".join(f"{s}:26379" for s in sentinels)
        assert env["VOXGATE_REDIS_SENTINEL_MASTER"] == "voxgate"
    for service in services.values():
        if "healthcheck" in service:
            assert service["healthcheck"]["test"][0] == "CMD"
