# syntax=docker/dockerfile:1
# The runbook-operator image: the release binary on distroless (glibc and CA certificates, no
# shell), run as the numeric non-root user 65532 so Kubernetes can verify runAsNonRoot.
#   docker build -t <registry>/runbook-operator:<version> .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# benches/ only because Cargo.toml declares the bench targets (cargo checks they exist).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin runbook-operator \
 && cp target/release/runbook-operator /usr/local/bin/runbook-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/runbook-operator /usr/local/bin/runbook-operator
USER 65532:65532
# /healthz, /readyz and /metrics (the chart runs it with --probe-addr 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/runbook-operator"]
CMD ["run"]
