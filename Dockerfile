# voxgate gateway image.  Build: docker build -t voxgate .
# Reproducible: the base image is pinned by version and every Python dependency
# (and the build backend) by constraints.txt, which scripts/constraints generates.

# --- build: a virtualenv with voxgate and its pinned dependencies ----------------
FROM python:3.11.7-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/constraints.txt

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY service ./service
# PIP_CONSTRAINT also pins setuptools inside pip's isolated build of voxgate itself.
RUN python -m venv /opt/voxgate \
    && /opt/voxgate/bin/pip install --no-cache-dir -c constraints.txt .

# --- runtime: the same base, the virtualenv, an unprivileged user -----------------
FROM python:3.11.7-slim-bookworm

RUN groupadd --system --gid 10001 voxgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin voxgate

COPY --from=build /opt/voxgate /opt/voxgate

ENV PATH=/opt/voxgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VOXGATE_HOST=0.0.0.0 \
    VOXGATE_PORT=8080 \
    VOXGATE_LOG_FORMAT=json \
    VOXGATE_STOP_TIMEOUT=10

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# Liveness: /healthz answers while the process serves (it stops during a drain,
# when the listening socket is closed on purpose). `voxgate healthcheck` asks the
# gateway's own VOXGATE_HOST/VOXGATE_PORT, never through an http_proxy, in 2 s, and
# starts in a few hundredths of a second. Exec form, and no argument holds whitespace:
# podman's Docker API splits arguments on it.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["voxgate", "healthcheck"]

# On SIGTERM the gateway drains itself: no new sessions, running ones may end by
# themselves, then each is ended cleanly (final turns, Termination, close 1012).
# VOXGATE_STOP_TIMEOUT (above) is what the runtime gives before SIGKILL: 10 s, the
# default of `docker stop` and `podman stop`, which an image cannot change. The gateway
# fits its whole stop into it (voxgate.shutdown: the sessions are ended at once, 4 s for
# upstream's final turns) and says at start that the 30 s VOXGATE_DRAIN_TIMEOUT was cut.
# The two must agree (larger than the runtime's, SIGKILL cuts the clean end). For the
# whole drain give it more:
# `docker run --stop-timeout 60 -e VOXGATE_STOP_TIMEOUT=60` (compose: stop_grace_period,
# Kubernetes: terminationGracePeriodSeconds; docs/deployment.md has every runtime).
STOPSIGNAL SIGTERM
ENTRYPOINT ["voxgate"]
CMD ["serve"]
