"""How long a SIGTERM'd gateway takes to exit, fitted into the time its runtime gives it
before SIGKILL. Pure: settings in, seconds out (the drain itself: relay/sessions.py,
server.py and app.py).

A stop has five parts, one after the other:

1. the drain proper: running sessions may end by themselves (``VOXGATE_DRAIN_TIMEOUT``);
2. the Terminate wait: each session left gets ``Terminate`` upstream and waits for its
   final turns and ``Termination`` (``VOXGATE_TERMINATE_TIMEOUT``);
3. the close margin: sessions close upstream and the client (1012, or 1013 when
   upstream never answered) and publish ``session.ended`` (``DRAIN_CLOSE_MARGIN``);
4. uvicorn's graceful shutdown of whatever is still open (``GRACEFUL_MARGIN``);
5. the lifespan shutdown: the transcript backlog flushed to Redis, the shared pool's
   last sync (``LIFESPAN_MAX``).

When the runtime's stop timeout is declared (``VOXGATE_STOP_TIMEOUT``), the whole stop
fits inside it, less ``EXIT_MARGIN``: parts 3-5 keep their minimum, the Terminate wait
gets what is left up to its setting, the drain proper what is left after that; at run
time parts 4 and 5 take what time is left, up to their maximum. Only when even the
minimum does not fit (``VOXGATE_STOP_TIMEOUT`` under ``min_stop_seconds()``) is there a
warning at start; a drain proper merely cut is said at info level.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxgate.relay.sessions import DRAIN_CLOSE_MARGIN
from voxgate.settings import Settings

#: Longest uvicorn's graceful shutdown waits for what the drain left open (HTTP
#: requests in flight, sessions still closing) before it cancels them.
GRACEFUL_MARGIN = 5.0
#: ... and the least it gets when the stop timeout is tight.
GRACEFUL_MIN = 1.0
#: Longest the lifespan shutdown takes: the publisher's flush (its FLUSH_TIMEOUT, 5 s)
#: beside the shared pool's last sync and leave (REDIS_TIMEOUT, 2 s), run side by side.
LIFESPAN_MAX = 7.0
#: ... and the least it gets when the stop timeout is tight (one Redis round trip, with
#: room; a healthy Redis takes milliseconds).
LIFESPAN_MIN = 2.0
#: Kept free before SIGKILL: the signal reaching the drain (uvicorn looks every 0.1 s)
#: and the interpreter's own exit.
EXIT_MARGIN = 1.0
#: A Terminate wait shorter than this is a misfit worth a warning (AssemblyAI usually
#: answers Terminate within a second).
TERMINATE_MIN = 1.0
#: Seconds between SIGTERM and SIGKILL when nobody sets them (docs/deployment.md):
#: the image's VOXGATE_STOP_TIMEOUT is the shortest of these that it cannot change.
DEFAULT_STOP_TIMEOUTS = {
    "docker stop / docker run": 10.0,
    "podman stop / podman run": 10.0,
    "docker compose (stop_grace_period)": 10.0,
    "podman-compose (podman's own)": 10.0,
    "kubernetes (terminationGracePeriodSeconds)": 30.0,
}


@dataclass(frozen=True, slots=True)
class StopPlan:
    """The five parts of a stop, in seconds (see the module doc)."""

    drain: float
    terminate: float
    close_margin: float
    graceful: float
    lifespan: float
    #: VOXGATE_STOP_TIMEOUT, when declared.
    limit: float | None = None

    @property
    def total(self) -> float:
        return self.drain + self.terminate + self.close_margin + self.graceful + self.lifespan

    @property
    def clean_end(self) -> float:
        """Everything after the drain proper."""
        return self.total - self.drain


def min_stop_seconds() -> float:
    """The shortest stop timeout the clean end fits into (a 1 s Terminate wait)."""
    return TERMINATE_MIN + DRAIN_CLOSE_MARGIN + GRACEFUL_MIN + LIFESPAN_MIN + EXIT_MARGIN


def stop_plan(settings: Settings) -> StopPlan:
    """The stop for these settings: whole when no stop timeout is declared, else fitted
    into it (see the module doc)."""
    limit = settings.stop_timeout
    if limit is None:
        return StopPlan(
            settings.drain_timeout,
            settings.terminate_timeout,
            DRAIN_CLOSE_MARGIN,
            GRACEFUL_MARGIN,
            LIFESPAN_MAX,
        )
    room = limit - EXIT_MARGIN - DRAIN_CLOSE_MARGIN - GRACEFUL_MIN - LIFESPAN_MIN
    terminate = max(0.0, min(settings.terminate_timeout, room))
    drain = max(0.0, min(settings.drain_timeout, room - terminate))
    spare = max(0.0, room - terminate - drain)
    graceful = GRACEFUL_MIN + min(GRACEFUL_MARGIN - GRACEFUL_MIN, spare)
    spare -= graceful - GRACEFUL_MIN
    lifespan = LIFESPAN_MIN + min(LIFESPAN_MAX - LIFESPAN_MIN, spare)
    return StopPlan(drain, terminate, DRAIN_CLOSE_MARGIN, graceful, lifespan, limit)


def drain_seconds(settings: Settings) -> float:
    """How long running sessions may end by themselves after SIGTERM."""
    return stop_plan(settings).drain


def terminate_seconds(settings: Settings) -> float:
    """How long a session ended by the drain waits for upstream's Termination."""
    return stop_plan(settings).terminate


def graceful_shutdown_seconds(settings: Settings) -> float:
    """uvicorn's own deadline, once the drain is over, for connections still open."""
    return stop_plan(settings).graceful


def clean_end_seconds(settings: Settings) -> float:
    """The longest the stop takes once the drain proper is over."""
    return stop_plan(settings).clean_end


def stop_budget_seconds(settings: Settings) -> float:
    """The longest a SIGTERM'd gateway takes to exit. A supervisor's kill deadline
    (``docker run --stop-timeout``, compose ``stop_grace_period``, Kubernetes
    ``terminationGracePeriodSeconds`` minus the preStop) should be at least this, or
    final transcripts may be cut. With VOXGATE_STOP_TIMEOUT declared it is at most that
    (unless under ``min_stop_seconds()``)."""
    plan = stop_plan(settings)
    return plan.total + (EXIT_MARGIN if plan.limit is not None else 0.0)


def stop_warning(settings: Settings) -> str | None:
    """One line for the start-up log when the stop cannot fit the declared stop timeout
    (None when it fits, or when no stop timeout is declared)."""
    plan = stop_plan(settings)
    if plan.limit is None or plan.terminate >= min(TERMINATE_MIN, settings.terminate_timeout):
        return None
    return (
        f"VOXGATE_STOP_TIMEOUT is {plan.limit:g} s, under the {min_stop_seconds():g} s a "
        f"clean end needs: sessions ended on SIGTERM get {plan.terminate:g} s for upstream's "
        f"final turns (VOXGATE_TERMINATE_TIMEOUT {settings.terminate_timeout:g} s) and may "
        "be cut by SIGKILL; give the gateway more time before SIGKILL (docker/podman "
        "--stop-timeout, compose stop_grace_period, Kubernetes "
        "terminationGracePeriodSeconds) and set VOXGATE_STOP_TIMEOUT to it"
    )


def stop_fitting(settings: Settings) -> str | None:
    """One line for the start-up log (info) when the declared stop timeout shortens the
    drain proper or the Terminate wait (None when nothing is cut)."""
    plan = stop_plan(settings)
    if plan.limit is None or (
        plan.drain >= settings.drain_timeout and plan.terminate >= settings.terminate_timeout
    ):
        return None
    return (
        f"VOXGATE_STOP_TIMEOUT is {plan.limit:g} s: on SIGTERM running sessions get "
        f"{plan.drain:g} s to end by themselves (VOXGATE_DRAIN_TIMEOUT "
        f"{settings.drain_timeout:g} s), then {plan.terminate:g} s for upstream's final "
        f"turns after Terminate (VOXGATE_TERMINATE_TIMEOUT {settings.terminate_timeout:g} s)"
    )
