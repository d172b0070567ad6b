# Shared by infra/run, infra/test and infra/bench: the project-local Python
# virtualenv (moto server, cfn-lint) and the emulator's lifecycle.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

# Creates .venv and installs infra/requirements.txt when they changed.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$REPO_ROOT/infra/requirements.txt" | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing the Python tools (moto server, cfn-lint) into .venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REPO_ROOT/infra/requirements.txt"
    echo "$want" > "$stamp"
  fi
}

# A free TCP port on loopback.
free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_moto PORT: starts moto server on 127.0.0.1:PORT, waits until it answers,
# and sets MOTO_PID. The caller's EXIT trap must call stop_moto.
start_moto() {
  local port="$1"
  mkdir -p "$REPO_ROOT/.local"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" > "$REPO_ROOT/.local/moto-$port.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2> /dev/null; then
      echo "moto server exited; see .local/moto-$port.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "moto server did not answer on port $port within 10 s" >&2
  return 1
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2> /dev/null; then
    kill "$MOTO_PID" 2> /dev/null || true
    wait "$MOTO_PID" 2> /dev/null || true
  fi
}
