# syntax=docker/dockerfile:1
#
# The `ferry` binary (broker, agent, certs, job, run) in a small image.
#   docker build -t ferry:local .
# Checked by tests/tests/deploy.rs (stages, Rust version, non-root user,
# entrypoint, COPY sources); see deploy/README.md.

# --- build ---------------------------------------------------------------
# Rust >= the workspace's rust-version (Cargo.toml); the lock file is used as is.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The whole workspace (every member is needed for `--locked` resolution);
# .dockerignore keeps target/, .git and local state out of the context.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferry \
    && install -m 0755 target/release/ferry /usr/local/bin/ferry \
    && strip --strip-debug /usr/local/bin/ferry

# --- run -----------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: S3 / HTTPS file sources and targets. Nothing else is
# needed: TLS is rustls, SQLite is built in.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so volumes and bind mounts can be prepared on the host.
# The directories below exist (owned by ferry) so that an empty named volume
# mounted on one of them starts out writable by ferry.
RUN groupadd --system --gid 10001 ferry \
    && useradd --system --uid 10001 --gid ferry --home-dir /var/lib/ferry \
       --no-create-home --shell /usr/sbin/nologin ferry \
    && install -d -o ferry -g ferry -m 0750 \
       /etc/ferry /etc/ferry/pki /var/lib/ferry \
       /var/lib/ferry/ca /var/lib/ferry/broker-pki /var/lib/ferry/agent-pki
COPY --from=builder /usr/local/bin/ferry /usr/local/bin/ferry
USER ferry:ferry
WORKDIR /var/lib/ferry
# The broker's QUIC port (UDP). The agent needs no port: it dials out.
EXPOSE 7800/udp 7800/tcp
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["--help"]
