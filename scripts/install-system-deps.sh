#!/usr/bin/env bash
# Install the Debian packages that `make test` and `make demo` need, once.
# Safe to run again: it only calls apt when something is missing.
set -euo pipefail

packages=(
  ca-certificates
  # end-to-end tests: network namespaces, NAT routers, a TURN server, a real SSH server
  iproute2
  iptables
  conntrack
  coturn
  openssh-server
  openssh-client
  # browser tests: Debian's Chromium, headless (no browser downloads)
  chromium
  # molecule and `make demo`: systemd containers under podman, built with debootstrap
  podman
  runc
  debootstrap
  nftables
)

# The venv needs Python's venv module (Debian ships it separately as python3-venv).
python="${PYTHON:-python3}"
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  packages+=(python3-venv)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
