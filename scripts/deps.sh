#!/usr/bin/env bash
# Installs the Debian packages rangekv needs to build, test and run its demo,
# skipping apt-get entirely when everything is already there.
set -euo pipefail

packages=(build-essential cmake pkg-config libuv1-dev libprotobuf-c-dev
          protobuf-c-compiler liblmdb-dev libsqlite3-dev postgresql-client
          iso-codes procps iproute2)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null |
            grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
