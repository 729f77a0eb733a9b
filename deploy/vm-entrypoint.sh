#!/bin/sh
# The vm runs as root and lays the volume out itself: DATA_DIR and its store are root's, the
# agent's folders `agent`'s (vm/src/fence.rs). Fly passes the app's secrets in the environment.
set -eu
exec /usr/local/bin/vm "$@"
