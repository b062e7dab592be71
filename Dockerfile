# syntax=docker/dockerfile:1

# Tessera container image: build in a Rust image, run in a slim Debian one.
#   docker build -t tessera .
#   docker run -p 127.0.0.1:8080:8080 -v tessera-data:/var/lib/tessera tessera

FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Migrations and templates are embedded in the binary at compile time. The cache mounts keep
# the registry and build artefacts between builds; the binary is copied out of the cached
# target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/tessera /usr/local/bin/tessera
# static/ (CSS, images) is served from disk; create it if the tree has none yet so the COPY
# below always has something to copy.
RUN mkdir -p static

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid tessera --home-dir /var/lib/tessera \
        --no-create-home --shell /usr/sbin/nologin tessera \
    && mkdir -p /var/lib/tessera \
    && chown tessera:tessera /var/lib/tessera \
    && chmod 0700 /var/lib/tessera
COPY --from=builder /usr/local/bin/tessera /usr/local/bin/tessera
COPY --from=builder /src/static /app/static

# Listen on every interface inside the container; keep the SQLite database and the generated
# key-encryption key in /var/lib/tessera (mount a volume there). Set TESSERA_ISSUER to the
# public https URL, and TESSERA_KEY_ENCRYPTION_KEY, in production.
ENV TESSERA_BIND=0.0.0.0:8080 \
    TESSERA_DATA_DIR=/var/lib/tessera
WORKDIR /var/lib/tessera
USER tessera:tessera
EXPOSE 8080
# No HEALTHCHECK: the image has no HTTP client. Orchestrators should probe GET /healthz
# (liveness) and GET /readyz (readiness: the store answers) on port 8080.
ENTRYPOINT ["tessera"]
CMD ["serve"]
