# voxgate gateway image. Build: docker build -t voxgate .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VOXGATE_HOST=0.0.0.0 \
    VOXGATE_PORT=8080 \
    VOXGATE_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home voxgate

USER 10001
EXPOSE 8080
# The gateway drains on SIGTERM (VOXGATE_DRAIN_TIMEOUT, default 30 s): give it that
# long plus the Terminate deadline before a kill (compose: stop_grace_period).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2); sys.exit(0)"]
ENTRYPOINT ["voxgate"]
CMD ["serve"]
