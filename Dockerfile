# The service and the console: `docker compose` and the Helm chart run `run` and `console` from
# this image. It carries the service's packages only: no development kit (simulator, embedded
# broker, fake providers) and no benchmarks. Dependencies come pinned and hashed from
# requirements/service.lock.
#
# The base is pinned by digest: a tag such as python:3.11-slim is rebuilt and moved, a digest
# names one image for good. To move to a newer base, pull the patch tag, take its digest
# (`docker buildx imagetools inspect python:3.11.X-slim`) and change both here.
FROM python:3.11.17-slim@sha256:45037981b62b34b44602584fccbc4d884d5f7dc92c7ee86bb38a698a79fe1e51
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# An unprivileged user owns /data, where everything the service writes lives (the SQLite
# database when no PostgreSQL is configured, the file channel's outbox, the download cache).
RUN useradd --system --uid 10001 --user-group --home-dir /home/breachwatch --create-home breachwatch \
 && mkdir -p /data/outbox /data/cache \
 && chown -R 10001:10001 /data
COPY requirements/service.lock /tmp/service.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/service.lock && rm /tmp/service.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY breachwatch ./breachwatch
COPY core ./core
COPY storage ./storage
COPY detectors ./detectors
COPY incidents ./incidents
COPY notifier ./notifier
COPY privacy ./privacy
COPY channels ./channels
COPY streams ./streams
COPY runtime ./runtime
COPY console ./console
RUN pip install --no-cache-dir --no-deps . && rm -rf /src
# Defaults for a container; every one can be overridden (docs/settings.md). Metrics and the
# health endpoints listen on every address, so Prometheus and the orchestrator reach them.
ENV BREACHWATCH_DB_URL=sqlite:////data/breachwatch.db \
    BREACHWATCH_OUTBOX_DIR=/data/outbox \
    BREACHWATCH_CACHE_DIR=/data/cache \
    BREACHWATCH_METRICS_HOST=0.0.0.0 \
    BREACHWATCH_METRICS_PORT=9400 \
    BREACHWATCH_LOG_FORMAT=json
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080 9400
# Alive: `run` answers /healthz on its metrics port. A light probe (standard library only):
# it runs every 30 s. Compose and the Helm chart ask the console its own way, and readiness too.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "breachwatch.probe", "run"]
ENTRYPOINT ["breachwatch"]
CMD ["run"]
