#!/bin/sh
# Installs the Debian packages gaggle needs to build, test and run its demo.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -eu

PKGS="build-essential cmake pkg-config git ca-certificates
libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev lmdb-utils libsodium-dev
libmicrohttpd-dev libcurl4-openssl-dev libyaml-dev libjansson-dev
clang libclang-rt-dev python3 python3-zmq curl prometheus iproute2 procps
ansible-core python3-jinja2"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# prometheus is wanted for promtool only: do not start its service.
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "install-deps: done"
