# streamalert: one small sidecar. Build: docker build -t streamalert:0.1.0 .  (the tag deploy/ manifests use:
# the package version, pyproject.toml)
# The base image is pinned to the exact CPython the test suite runs on; the dependencies to constraints.txt.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY streamalert ./streamalert
RUN pip wheel --no-cache-dir --constraint constraints.txt --wheel-dir /wheels .

FROM python:3.11.7-slim-bookworm
# Python's objects come from jemalloc, not from CPython's own allocator: after a flood of series has ended,
# the memory goes back to the system within jemalloc's 10 s decay (CPython's keeps every 1 MiB arena in which
# one object still lives: 120-180 MB after 1M series). It costs about 9 % of the replay throughput; README "State",
# Memory after a flood. `-e PYTHONMALLOC=pymalloc` gives that back and keeps the memory.
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/*
ENV PYTHONMALLOC=malloc LD_PRELOAD=libjemalloc.so.2
RUN useradd --system --uid 10001 streamalert
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
COPY config /etc/streamalert
USER streamalert
# http.listen of the shipped configs: /healthz, /readyz, /metrics and the Vector ingest path
EXPOSE 8080
# Liveness as Kubernetes checks it (the image has no curl): a listener on another port overrides this.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["streamalert"]
CMD ["check", "/etc/streamalert/rules"]
