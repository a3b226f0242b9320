#!/usr/bin/env bash
# Build a Debian 12 image with systemd as PID 1, from Debian's mirror only (no registry is
# reachable here), for `make demo` and the molecule scenarios: localhost/homelab-p2p-systemd:bookworm.
# Skips the build when the image exists (FORCE=1 rebuilds). Needs root, debootstrap and podman.
set -euo pipefail

IMAGE=${IMAGE:-localhost/homelab-p2p-systemd:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMAGE"; then
  echo "build-systemd-image: $IMAGE exists"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
echo "build-systemd-image: debootstrap bookworm (a minute or two)"
# python3-apt for Ansible's apt module, python3-venv for the daemon's venv, netbase for
# /etc/protocols (firewalls need it), procps for the guide's `ps aux | grep homelab_server`,
# openssh-server as the homelab service `make demo` reaches.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,iproute2,nftables,netbase,ca-certificates,procps,openssh-server \
  bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
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
  - "$IMAGE" >/dev/null
echo "build-systemd-image: built $IMAGE"
