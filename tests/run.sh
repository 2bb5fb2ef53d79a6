#!/bin/sh
# Sets up a fresh Debian machine for nac's test suite and runs it.
# Installs the Debian packages the interoperability tests drive (when run as
# root), installs nac with its test extras, then runs pytest.  Extra arguments
# go to pytest.
set -eu
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES="openssl"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for pkg in $DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
fi

python3 -m pip install -q --disable-pip-version-check '.[test]'
exec python3 -m pytest -q -p no:cacheprovider "$@"
