# The vm: the vm binary plus Claude Code, Playwright MCP and Debian's Chromium.
# Build from the repository root: docker build -f deploy/vm.Dockerfile .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vm --bin vm

FROM node:22.21-bookworm-slim
ARG CLAUDE_CODE_VERSION=2.1.330
ARG PLAYWRIGHT_MCP_VERSION=0.0.83
# Debian's security updates replace package versions, so apt packages follow the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates chromium curl git fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
RUN npm install -g "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" "@playwright/mcp@${PLAYWRIGHT_MCP_VERSION}" \
 && npm cache clean --force
RUN useradd --create-home --uid 1000 --shell /bin/bash agent \
 && mkdir -p /data \
 && chown agent:agent /data
COPY --from=build /src/target/release/vm /usr/local/bin/vm
COPY deploy/vm-entrypoint.sh /usr/local/bin/vm-entrypoint
ENV PORT=8080 DATA_DIR=/data CHROMIUM_PATH=/usr/bin/chromium AGENT_CMD=claude
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s CMD ["curl", "-fsS", "http://127.0.0.1:8080/health"]
# The entrypoint starts as root only to hand the freshly mounted Fly volume to `agent`, then
# drops to it for good (see vm-entrypoint.sh); Claude Code refuses to skip permissions as root.
# hadolint ignore=DL3002
USER 0:0
ENTRYPOINT ["/usr/local/bin/vm-entrypoint"]
