FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY breachwatch ./breachwatch
COPY streams ./streams
COPY detectors ./detectors
COPY incidents ./incidents
COPY notifier ./notifier
COPY console ./console
COPY bench ./bench
RUN pip install --no-cache-dir . && useradd --system --uid 10001 breachwatch
USER breachwatch
ENTRYPOINT ["breachwatch"]
CMD ["run"]
