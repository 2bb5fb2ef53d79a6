#!/bin/sh
# Sets up a fresh Debian machine for nac's test suite and runs it.
# As root: installs the Debian packages the interoperability tests drive
# (eapol_test, radclient, strongSwan, PostgreSQL, and hostapd and FreeRADIUS
# as the reference RADIUS servers of bench/radius_reference.py) and starts a local
# PostgreSQL with a test database, so the database tests run on SQLite and
# on PostgreSQL.  Then installs nac with its test extras and runs pytest.
# Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES="openssl iproute2 eapoltest freeradius-utils charon-systemd strongswan-swanctl
libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins postgresql hostapd freeradius"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for pkg in $DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
    # the packaged daemons are not what the tests run: they start their own
    for daemon in freeradius hostapd; do
        service "$daemon" stop >/dev/null 2>&1 || true
    done
fi

# eapol_test's EAP-TNC client reads its IMC list from /etc/tnc_config; an
# empty one (no IMCs) is what the RADIUS interoperability tests expect.
if [ "$(id -u)" = 0 ] && [ ! -e /etc/tnc_config ]; then
    : > /etc/tnc_config
fi

# A local PostgreSQL for the database tests (unless one is named already).
if [ -z "${NAC_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null 2>&1; then
    cluster=$(pg_lsclusters -h | awk 'NR == 1 {print $1 " " $2}')
    if [ -n "$cluster" ]; then
        # shellcheck disable=SC2086
        pg_ctlcluster $cluster start 2>/dev/null || true
        port=$(pg_lsclusters -h | awk 'NR == 1 {print $3}')
        su postgres -c "psql -q -p $port -tc \"SELECT 1 FROM pg_roles WHERE rolname = 'nac_test'\" | grep -q 1 ||
            psql -q -p $port -c \"CREATE ROLE nac_test LOGIN PASSWORD 'nac_test'\"" &&
        su postgres -c "psql -q -p $port -tc \"SELECT 1 FROM pg_database WHERE datname = 'nac_test'\" | grep -q 1 ||
            createdb -p $port -O nac_test nac_test" &&
        # the test role logs in with its password over the Unix socket too,
        # which tests in network namespaces of their own can still reach
        hba=$(pg_conftool $cluster show hba_file 2>/dev/null | sed "s/.*= *'\{0,1\}\([^']*\)'\{0,1\}/\1/") &&
        hba=${hba:-/etc/postgresql/$(echo "$cluster" | tr ' ' /)/pg_hba.conf} &&
        { grep -q '^local  *nac_test  *nac_test' "$hba" ||
          { sed -i '0,/^local/s//local   nac_test        nac_test                                scram-sha-256\nlocal/' "$hba" &&
            pg_ctlcluster $cluster reload; }; } &&
        socket=$(pg_conftool $cluster show unix_socket_directories 2>/dev/null |
                 sed "s/.*= *'\{0,1\}\([^',]*\).*/\1/") &&
        NAC_TEST_POSTGRES_URL="postgresql+psycopg://nac_test:nac_test@/nac_test?host=${socket:-/var/run/postgresql}&port=$port" &&
        export NAC_TEST_POSTGRES_URL ||
        { echo "tests/run.sh: could not prepare the local PostgreSQL for the database tests" >&2; exit 1; }
    fi
fi

python3 -m pip install -q --disable-pip-version-check '.[test]'
exec python3 -m pytest -q -p no:cacheprovider "$@"
