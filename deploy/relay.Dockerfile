# The relay: a static musl binary on distroless, running as a non-root user.
# Build from the repository root: docker build -f deploy/relay.Dockerfile .
FROM rust:1.95-alpine3.23@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2 AS build
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p relay --bin relay \
 && mkdir -p /out/var/lib/textslash \
 && cp target/release/relay /out/relay

# distroless/static: CA certificates, /etc/passwd with `nonroot` (65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
COPY --from=build /out/relay /relay
COPY --from=build --chown=65532:65532 /out/var/lib/textslash /var/lib/textslash
ENV PORT=8080 DATA_DIR=/var/lib/textslash
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/relay"]
