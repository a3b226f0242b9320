#!/usr/bin/env bash
# Build a Debian image with systemd as PID 1, from Debian's mirror only (no registry is
# reachable here), for `make demo` and the molecule scenarios.
#   scripts/build-systemd-image.sh [SUITE...]     SUITE: bookworm (Debian 12, the default) or trixie (13)
# Each becomes localhost/homelab-p2p-systemd:SUITE. A suite whose image exists is skipped
# (FORCE=1 rebuilds). Needs root, debootstrap and podman.
set -euo pipefail

MIRROR=${MIRROR:-http://deb.debian.org/debian}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm)

build() {
  local suite=$1 image=localhost/homelab-p2p-systemd:$1
  case "$suite" in
    bookworm | trixie) ;;
    *) echo "build-systemd-image: '$suite' is not a tested suite; use bookworm or trixie" >&2; return 2 ;;
  esac
  if [ "${FORCE:-0}" != 1 ] && podman image exists "$image"; then
    echo "build-systemd-image: $image exists"
    return 0
  fi
  local work rootfs
  work=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: $work is local to this call
  trap "rm -rf '$work'" RETURN
  rootfs=$work/rootfs
  echo "build-systemd-image: debootstrap $suite (a minute or two)"
  # python3-apt for Ansible's apt module, python3-venv for the daemon's venv, netbase for
  # /etc/protocols (firewalls need it), procps for the guide's `ps aux | grep homelab_server`,
  # openssh-server as the homelab service `make demo` reaches.
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,iproute2,nftables,netbase,ca-certificates,procps,openssh-server \
    "$suite" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; return 1; }
  cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
  rm -f "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages
  : >"$rootfs/etc/machine-id"                                   # a new one at each boot
  rm -f "$rootfs"/etc/systemd/system/getty.target.wants/*        # no console logins in a container
  rm -f "$rootfs"/etc/ssh/ssh_host_*                             # each container makes its own keys:
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
  cat >"$rootfs/etc/systemd/system/ssh.service.d/host-keys.conf" <<UNIT
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
  tar -C "$rootfs" --numeric-owner -c . | podman import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=podman' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    - "$image" >/dev/null
  echo "build-systemd-image: built $image"
}

# The suites build side by side: debootstrap waits on the mirror more than on the CPU.
pids=()
for suite in "${suites[@]}"; do
  build "$suite" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
