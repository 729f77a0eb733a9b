#!/bin/sh
# A Fly volume is mounted root-owned over /data: hand it to the agent user, then run the vm as
# that user, keeping the environment (Fly passes the app's secrets there).
set -eu
chown agent:agent "${DATA_DIR:-/data}"
exec setpriv --reuid=agent --regid=agent --init-groups env HOME=/home/agent /usr/local/bin/vm "$@"
