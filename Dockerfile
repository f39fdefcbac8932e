# One image for every Switchboard process; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 LITELLM_LOCAL_MODEL_COST_MAP=True SB_DATA_DIR=/data
WORKDIR /app
# git: each thread's work is a branch; bubblewrap (util-linux's unshare and prlimit, else): the
# sandbox of every program a tool starts (docs/sandbox.md: in a container it needs user
# namespaces, which Docker's default seccomp profile refuses).
RUN apt-get update && apt-get install -y --no-install-recommends git util-linux bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml uv.lock README.md topology.yaml ./
COPY protocol ./protocol
COPY core ./core
COPY natsauth ./natsauth
COPY runtime ./runtime
COPY modelcall ./modelcall
COPY artifacts ./artifacts
COPY analytics ./analytics
COPY actors ./actors
COPY gateway ./gateway
COPY api ./api
COPY offline_model ./offline_model
COPY switchboard ./switchboard
# The locked set (uv.lock), then the project itself with no dependencies of its own choosing.
RUN pip install --no-cache-dir uv==0.13.8 \
    && uv export --locked --no-emit-project --format requirements-txt -o /tmp/requirements.txt \
    && uv pip install --system --no-cache --require-hashes -r /tmp/requirements.txt \
    && uv pip install --system --no-cache --no-deps . \
    && rm /tmp/requirements.txt && mkdir -p /data
ENV SB_TOPOLOGY=/app/topology.yaml
ENTRYPOINT ["switchboard"]
