# syntax=docker/dockerfile:1
# Build: docker build -t webhookd .
# Run:   docker run -e WEBHOOKD_DATABASE_URL=postgresql://... -p 9464:9464 webhookd
FROM python:3.12-slim AS build
WORKDIR /src
RUN python -m venv /opt/webhookd
COPY pyproject.toml README.md ./
COPY daemon ./daemon
RUN /opt/webhookd/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin webhookd
COPY --from=build /opt/webhookd /opt/webhookd
ENV PATH=/opt/webhookd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WEBHOOKD_METRICS_LISTEN=0.0.0.0:9464
USER webhookd
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["webhookd"]
CMD ["run"]
