# One image for the Dagster webserver, the daemon, the code location and the API.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GX_ANALYTICS_ENABLED=false DAGSTER_HOME=/opt/dagster/home
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
# bytecode compiled at build time: with PYTHONDONTWRITEBYTECODE set, every process (each Dagster step too) would
# otherwise compile every module it imports from source again (~1 s a process; see the Makefile's install)
RUN pip install --no-cache-dir uv==0.13.8 && uv pip install --system --no-cache --compile-bytecode -r requirements.lock
COPY . .
RUN uv pip install --system --no-cache --no-deps -e . \
    && python -m compileall -q -j 0 warehouse ingestion transforms reconciliation assets orchestration api samples \
    && mkdir -p $DAGSTER_HOME && cp deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml
EXPOSE 3000 4000 8000
CMD ["coinfrs", "serve", "--host", "0.0.0.0", "--port", "8000"]
