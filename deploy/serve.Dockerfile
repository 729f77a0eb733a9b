# The page host: `textslash serve` with the built page, for when browsers may not call Fly's
# API directly (it forwards the page's Fly calls from its own origin; see the README's
# "Self-host the page"). Build from the repository root:
#   docker build -f deploy/serve.Dockerfile --build-arg OWNER=<github owner> .
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
# npm: binaryen's wasm-opt, which `cargo xtask dist` installs for the page build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# The page names this owner's images, as pages.yml does for GitHub Pages.
ARG OWNER=textslash
RUN owner="$(printf '%s' "$OWNER" | tr '[:upper:]' '[:lower:]')" \
 && version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" \
 && printf '{"api_base": "https://api.machines.dev", "app_url": "https://{app}.fly.dev", "images": {"relay": "ghcr.io/%s/textslash-relay:%s", "vm": "ghcr.io/%s/textslash-vm:%s"}, "telegram_api": "https://api.telegram.org", "anthropic_api": "https://api.anthropic.com"}\n' "$owner" "$version" "$owner" "$version" > wizard-wasm/public/config.json \
 && cargo xtask dist \
 && cargo build --release --locked -p cli --bin textslash

# distroless/cc: glibc and nothing else; reqwest brings its own TLS roots.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /src/target/release/textslash /textslash
COPY --from=build /src/dist /page
ENV TEXTSLASH_PAGE=/page TEXTSLASH_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/textslash", "serve"]
