# Sourced by scripts/server.sh and tests/run.sh (POSIX sh): nac_venv SPEC...
# makes the virtual environment nac runs in and installs SPEC into it with pip.
#
# Debian's system Python is "externally managed" (PEP 668): pip refuses to
# install into it, so nac gets a virtual environment of its own, .venv in the
# repository (or $NAC_VENV), made from the system's Python, /usr/bin/python3
# (or $NAC_PYTHON, else the first python3 on the PATH), which every user can
# run: nac's processes may run as a service user.  As root on Debian, a
# missing python3 or python3-venv is installed with apt-get; otherwise their
# absence is one line saying what to install.  Sets NAC_VENV to the
# environment's directory.

nac_venv() {
    NAC_VENV=${NAC_VENV:-$PWD/.venv}
    python=${NAC_PYTHON:-/usr/bin/python3}
    [ -x "$python" ] || python=python3
    if [ ! -x "$NAC_VENV/bin/pip" ]; then
        rm -rf "$NAC_VENV"
        if ! command -v "$python" >/dev/null 2>&1 || ! "$python" -m venv "$NAC_VENV" >/dev/null 2>&1; then
            rm -rf "$NAC_VENV"
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    python3 python3-venv >/dev/null
                /usr/bin/python3 -m venv "$NAC_VENV"
            else
                echo "$0: nac needs Python 3.11 or newer with its venv module (Debian: apt-get install python3-venv)" >&2
                exit 1
            fi
        fi
    fi
    echo "$0: installing nac and its dependencies into $NAC_VENV" >&2
    "$NAC_VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
