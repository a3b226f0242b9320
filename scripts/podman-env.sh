# Source this: podman settings that work on this kind of machine (no systemd as PID 1,
# hybrid cgroups, a hard open-file limit below podman's default).
mkdir -p "${TMPDIR:-/tmp}/homelab-p2p-podman"
CONTAINERS_CONF="${TMPDIR:-/tmp}/homelab-p2p-podman/containers.conf"
cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF
