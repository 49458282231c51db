# berth's service image: `docker build -t berth .` from the repository root.
#
# Stage 1 builds the `berth` binary with the locked dependencies (default features: the
# pure-Rust `flex` backend, no LibTorch). Stage 2 runs it as a non-root user on a slim base.
# The `tch` variant (LibTorch, CPU or CUDA) is built the way the README's "Devices" section
# says, with `--build-arg FEATURES=tch` and a base image that carries PyTorch 2.9.0's
# libraries (e.g. pytorch/pytorch with CUDA for GPU training tasks).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG FEATURES=""
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY core core
COPY env env
COPY agents agents
COPY api api
# Shipped scenarios are compiled into the binary (include_str!).
COPY scenarios scenarios
RUN cargo build --locked --release -p berth-api --bin berth --features "${FEATURES}" \
 && cp target/release/berth /usr/local/bin/berth

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 berth \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin berth
COPY --from=build /usr/local/bin/berth /usr/local/bin/berth
# Listen on every interface inside the container; the Service decides who can reach it.
ENV BERTH_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Nothing is written to the root filesystem: it can be mounted read-only.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/berth", "serve"]
