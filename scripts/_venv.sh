# Sourced by run.sh and test.sh: make sure .venv exists with the given extras installed.
# Usage: ensure_venv ""  |  ensure_venv "[dev]"
ensure_venv() {
  local extras=$1
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "erp-bridge needs Python 3.11 or newer (found $(python3 --version 2>&1))" >&2; exit 1; }
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
      apt-get install -y python3-venv >/dev/null
    else
      echo "Python's venv module is missing: run 'sudo apt-get install -y python3-venv' and retry" >&2; exit 1
    fi
  fi
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
}
