# The guard's image for docker-compose / production: a ClickHouse server is used over HTTP,
# so the heavy [embedded] extra (chDB, Tansu) is not installed.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY healing_guard ./healing_guard
COPY infra ./infra
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["guard"]
CMD ["worker"]
