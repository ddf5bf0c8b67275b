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
    VOXGATE_LOG_FORMAT=json

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# Liveness: /healthz answers while the process serves (it stops during a drain,
# when the listening socket is closed on purpose).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VOXGATE_PORT', '8080'), timeout=2)"]

# On SIGTERM the gateway drains itself: no new sessions, running ones go on for
# VOXGATE_DRAIN_TIMEOUT (30 s), then each is ended cleanly (final turns,
# Termination, close 1012). It exits within voxgate.server.stop_budget_seconds:
# drain + 2 x VOXGATE_TERMINATE_TIMEOUT + 7 s = 57 s by default. Docker's own stop
# timeout is 10 s: use `docker run --stop-timeout 60` (compose: stop_grace_period,
# Kubernetes: terminationGracePeriodSeconds), or final transcripts may be cut.
STOPSIGNAL SIGTERM
ENTRYPOINT ["voxgate"]
CMD ["serve"]
