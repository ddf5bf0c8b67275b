"""Where tenants live in Redis, pure: key names and the Lua scripts (``lua/``).

Keys of one client share the hash tag ``{<name>}`` (so the admission script's keys
are in one slot on a Redis Cluster); keys of one upstream key share ``{<alias>}``; the
records, their version and the audit share ``{tenants}`` (an admin change writes a
record and the version in one transaction).

* ``voxgate:{tenants}:clients``: hash, client name -> record JSON (key digests, never a secret)
* ``voxgate:{tenants}:version``: incremented at every change; replicas poll it each second
* ``voxgate:{tenants}:upstream_keys``: hash, alias -> settings JSON (budget; the secret of
  a key added at runtime)
* ``voxgate:{tenants}:audit``: stream of changes (who, what, when; never a secret)
* ``voxgate:tenant:{<name>}:sessions`` / ``:starts``: sorted sets, running sessions
  (lease expiry) and starts of the last minute, across replicas
* ``voxgate:tenant:{<name>}:usage:<day|month>:<date>``, ``voxgate:keyusage:{<alias>}:...``:
  hashes ``audio_seconds``, ``session_seconds``, ``sessions``, ``cost_usd`` and
  ``audio_seconds:<model>``, ``cost_usd:<model>``
* ``voxgate:usage:index:<client|key>:<day|month>:<date>``: sets of the names with usage then
"""

from __future__ import annotations

from importlib import resources

CLIENTS = "voxgate:{tenants}:clients"
VERSION = "voxgate:{tenants}:version"
UPSTREAM_KEYS = "voxgate:{tenants}:upstream_keys"
AUDIT = "voxgate:{tenants}:audit"
#: Entries kept in the audit stream (approximately).
AUDIT_MAXLEN = 100_000
#: Usage hashes are kept this long after their last write (seconds).
USAGE_TTL = {"day": 40 * 86_400, "month": 400 * 86_400}


def sessions_key(client: str) -> str:
    return f"voxgate:tenant:{{{client}}}:sessions"


def starts_key(client: str) -> str:
    return f"voxgate:tenant:{{{client}}}:starts"


def usage_key(by: str, name: str, period: str, date: str) -> str:
    """The usage hash of a ``client`` or upstream ``key`` in a ``day`` or ``month``."""
    if by == "client":
        return f"voxgate:tenant:{{{name}}}:usage:{period}:{date}"
    return f"voxgate:keyusage:{{{name}}}:{period}:{date}"


def index_key(by: str, period: str, date: str) -> str:
    return f"voxgate:usage:index:{by}:{period}:{date}"


def _lua(name: str) -> str:
    return (resources.files("voxgate.tenants") / "lua" / f"{name}.lua").read_text()


ADMIT_LUA = _lua("admit")
RENEW_LUA = _lua("renew")
