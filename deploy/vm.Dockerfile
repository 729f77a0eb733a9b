# The vm: the vm binary plus Claude Code, Playwright MCP and Debian's Chromium.
# Build from the repository root: docker build -f deploy/vm.Dockerfile .
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vm --bin vm

FROM node:22.21-bookworm-slim@sha256:f9f7f95dcf1f007b007c4dcd44ea8f7773f931b71dc79d57c216e731c87a090b
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
 && mkdir -p /data
COPY --from=build /src/target/release/vm /usr/local/bin/vm
COPY deploy/vm-entrypoint.sh /usr/local/bin/vm-entrypoint
# Root's, read-only to the agent: Claude Code's hooks stay off whatever the agent writes into
# its own settings (vm/src/fence.rs).
COPY --chmod=0644 deploy/claude-managed-settings.json /etc/claude-code/managed-settings.json
ENV PORT=8080 DATA_DIR=/data CHROMIUM_PATH=/usr/bin/chromium AGENT_CMD=claude AGENT_USER=agent
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s CMD ["curl", "-fsS", "http://127.0.0.1:8080/health"]
# The vm runs as root so it can start the agent as `agent` (AGENT_USER) with no_new_privs, keep
# its store and secrets from it, and stay undumpable (vm/src/fence.rs); the agent never runs as
# root, where Claude Code would also refuse to skip permissions.
# hadolint ignore=DL3002
USER 0:0
ENTRYPOINT ["/usr/local/bin/vm-entrypoint"]
