# The operator image. Build: docker build -t sluice .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && useradd --uid 10001 sluice
USER 10001
EXPOSE 8080
ENTRYPOINT ["sluice", "run"]
