#!/bin/sh
# Runs nac from this checkout in the foreground: `sh scripts/server.sh [twistd nac options]`.
#
# Installs nac into the virtual environment .venv (see scripts/venv.sh) and
# starts `twistd -n nac` with the given options.  Without any, nac serves
# PT-TLS on port 271 (so as root) with an embedded SQLite database and
# generated demo certificates in its state directory (/var/lib/nac as root,
# ~/.local/state/nac otherwise).  Stop it with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
. scripts/venv.sh
nac_venv .
exec "$NAC_VENV/bin/twistd" -n --pidfile= nac "$@"
