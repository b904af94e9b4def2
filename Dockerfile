# The service and the console: `docker compose` runs `run` and `console` from this image.
# It carries the service's packages only: no development kit (simulator, embedded broker, fake
# providers) and no benchmarks. Dependencies come pinned and hashed from requirements/service.lock.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /home/breachwatch --create-home breachwatch
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
WORKDIR /home/breachwatch
USER breachwatch
ENTRYPOINT ["breachwatch"]
CMD ["run"]
