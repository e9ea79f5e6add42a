# One image for the Dagster webserver, the daemon, the code location and the API.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GX_ANALYTICS_ENABLED=false DAGSTER_HOME=/opt/dagster/home
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir uv==0.13.8 && uv pip install --system --no-cache -r requirements.lock
COPY . .
RUN uv pip install --system --no-cache --no-deps -e . && mkdir -p $DAGSTER_HOME && cp deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml
EXPOSE 3000 4000 8000
CMD ["coinfrs", "serve", "--host", "0.0.0.0", "--port", "8000"]
