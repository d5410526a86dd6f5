# streamalert: one small sidecar. Build: docker build -t streamalert .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamalert ./streamalert
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 streamalert
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config /etc/streamalert
USER streamalert
# http.listen of the shipped configs: /healthz, /readyz, /metrics and the Vector ingest path
EXPOSE 8080
ENTRYPOINT ["streamalert"]
CMD ["check", "/etc/streamalert/rules"]
