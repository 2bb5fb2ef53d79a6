#!/bin/sh
# nac's test suite on a fresh Debian machine: `sh tests/run.sh [pytest arguments]`.
#
# What it changes on the machine, as root only (as another user it changes
# nothing outside the repository, and the tests that need root or a missing
# program skip, each saying why):
#   - installs, with apt-get and without recommended packages, python3-venv
#     and the Debian packages whose programs the interoperability tests and
#     benchmarks drive: DEBIAN_PACKAGES below;
#   - stops the freeradius and hostapd services those packages start (the
#     tests run their own, on ports of their choosing);
#   - creates /etc/tnc_config, empty, when there is none: eapol_test's TNC
#     client reads its IMC list from that fixed path and fails without it.
# In the repository it makes the virtual environment .venv (Debian's Python
# takes no pip installs, PEP 668) with nac installed in editable mode and its
# test dependencies, then runs pytest in it.  The tests write only under
# temporary directories; the PostgreSQL tests start a private server there
# (tests/postgres.py) unless NAC_TEST_POSTGRES_URL names one.
set -eu
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES="openssl iproute2 eapoltest wpasupplicant freeradius-utils charon-systemd strongswan-swanctl
libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins postgresql hostapd freeradius
logrotate util-linux swtpm swtpm-tools tpm2-tools chromium chromium-driver"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for pkg in python3-venv $DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "tests/run.sh: installing Debian packages:$missing" >&2
        apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    for daemon in freeradius hostapd; do
        service "$daemon" stop >/dev/null 2>&1 || true
    done
    [ -e /etc/tnc_config ] || : > /etc/tnc_config
fi

. scripts/venv.sh
# editable, so that the suite tests this checkout and `trial tests` finds the
# tests package from the repository root
nac_venv --config-settings editable_mode=compat -e '.[test]'
exec "$NAC_VENV/bin/python" -m pytest -q "$@"
