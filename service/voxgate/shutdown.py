"""How long a SIGTERM'd gateway takes to exit, fitted into the time its runtime gives it
before SIGKILL. Pure: settings in, seconds out (the drain itself: relay/sessions.py and
server.py).

A stop has three parts: the drain proper, where running sessions may end by themselves
(up to ``VOXGATE_DRAIN_TIMEOUT``); the clean end of those left (``Terminate`` upstream,
final turns, ``Termination``, close 1012: up to ``VOXGATE_TERMINATE_TIMEOUT`` plus
``DRAIN_CLOSE_MARGIN``); and uvicorn's graceful shutdown of what is still open. When the
runtime's stop timeout is declared (``VOXGATE_STOP_TIMEOUT``) the drain proper is cut so
that the clean end still happens before SIGKILL; a start-up warning says so.
"""

from __future__ import annotations

from voxgate.relay.sessions import DRAIN_CLOSE_MARGIN
from voxgate.settings import Settings

#: After the drain, how long uvicorn waits for what is left before cancelling it,
#: past the Terminate deadline.
GRACEFUL_MARGIN = 5.0
#: Seconds between SIGTERM and SIGKILL when nobody sets them (docs/deployment.md):
#: the image's VOXGATE_STOP_TIMEOUT is the shortest of these that it cannot change.
DEFAULT_STOP_TIMEOUTS = {
    "docker stop / docker run": 10.0,
    "podman stop / podman run": 10.0,
    "docker compose (stop_grace_period)": 10.0,
    "podman-compose (podman's own)": 10.0,
    "kubernetes (terminationGracePeriodSeconds)": 30.0,
}


def graceful_shutdown_seconds(settings: Settings) -> int:
    """uvicorn's own deadline, once the drain is over, for connections still open."""
    return int(settings.terminate_timeout + GRACEFUL_MARGIN)


def clean_end_seconds(settings: Settings) -> float:
    """The longest the stop takes once the drain proper is over: the Terminate deadline
    and its margin, then uvicorn's graceful shutdown."""
    return settings.terminate_timeout + DRAIN_CLOSE_MARGIN + graceful_shutdown_seconds(settings)


def drain_seconds(settings: Settings) -> float:
    """How long running sessions may end by themselves after SIGTERM: the configured
    drain, cut so that drain + clean end fit inside ``VOXGATE_STOP_TIMEOUT`` when it is
    declared (at least 0)."""
    if settings.stop_timeout is None:
        return settings.drain_timeout
    room = settings.stop_timeout - clean_end_seconds(settings)
    return max(0.0, min(settings.drain_timeout, room))


def stop_budget_seconds(settings: Settings) -> float:
    """The longest a SIGTERM'd gateway takes to exit. A supervisor's kill deadline
    (``docker run --stop-timeout``, compose ``stop_grace_period``, Kubernetes
    ``terminationGracePeriodSeconds`` minus the preStop) should be at least this, or
    final transcripts may be cut."""
    return drain_seconds(settings) + clean_end_seconds(settings)


def stop_warning(settings: Settings) -> str | None:
    """One line for the start-up log when the configured stop does not fit the declared
    stop timeout (None when it fits, or when no stop timeout is declared)."""
    limit = settings.stop_timeout
    if limit is None or settings.drain_timeout + clean_end_seconds(settings) <= limit:
        return None
    parts = [f"VOXGATE_STOP_TIMEOUT is {limit:g} s"]
    drain = drain_seconds(settings)
    if drain < settings.drain_timeout:
        parts.append(
            f"on SIGTERM running sessions get {drain:g} s to end by themselves "
            f"(VOXGATE_DRAIN_TIMEOUT {settings.drain_timeout:g} s) before they are ended cleanly"
        )
    if clean_end_seconds(settings) > limit:
        parts.append(
            f"ending them may take up to {clean_end_seconds(settings):g} s when upstream is "
            f"slow to answer Terminate (VOXGATE_TERMINATE_TIMEOUT "
            f"{settings.terminate_timeout:g} s), past SIGKILL"
        )
    parts.append(
        "give the gateway more time before SIGKILL (docker/podman --stop-timeout, compose "
        "stop_grace_period, Kubernetes terminationGracePeriodSeconds) and set "
        "VOXGATE_STOP_TIMEOUT to it"
    )
    return "; ".join(parts)
