# Shared by infra/run, infra/test, infra/bench and infra/ops: the project-local
# Python virtualenv (moto server, cfn-lint), the build, and the emulator's lifecycle.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
CHECKOV_VENV="$REPO_ROOT/.venv-checkov"
# cargo-deny, built once from crates.io into cargo's own bin directory (outside
# the clone, so a machine keeps it between clones).
CARGO_DENY_VERSION="0.20.2"

# Where cargo builds: CARGO_TARGET_DIR if set (relative to the repository), else target/.
target_dir() {
  local dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  case "$dir" in
    /*) echo "$dir" ;;
    *) echo "$REPO_ROOT/$dir" ;;
  esac
}

# install_venv DIR REQUIREMENTS WHAT: creates DIR and installs REQUIREMENTS when they changed.
install_venv() {
  local dir="$1" requirements="$2" what="$3"
  local stamp="$dir/.requirements.sha256"
  local want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing $what into $(basename "$dir") (a minute or two, once)"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --disable-pip-version-check --progress-bar on \
      -r "$requirements" | grep -E '^(Collecting|Successfully)' || true
    echo "$want" > "$stamp"
  fi
}

# .venv: moto server, cfn-lint, the SAM translator, schemathesis.
ensure_venv() {
  install_venv "$VENV" "$REPO_ROOT/infra/requirements.txt" "the Python tools (moto server, cfn-lint, SAM translator, schemathesis)"
}

# .venv-checkov: checkov alone.
ensure_checkov() {
  install_venv "$CHECKOV_VENV" "$REPO_ROOT/infra/requirements-checkov.txt" "checkov"
}

# cargo-deny at the pinned version, built from crates.io if missing (about 7 minutes on 2 cores, once per machine).
ensure_cargo_deny() {
  if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    echo "==> building cargo-deny $CARGO_DENY_VERSION from crates.io (about 7 minutes on 2 cores, once per machine)"
    cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
  fi
}

# Every binary of the workspace (local stack, operator CLI, functions), built
# with the whole workspace selected, like the test build: each crate is compiled
# once per profile, whichever command runs first (docs/decisions/0009).
build_binaries() {
  if [ "${1:-}" = "quiet" ]; then
    cargo build --quiet --workspace --bins
  else
    echo "==> building the local stack, the operator CLI and the functions (first time: several minutes on 2 cores)"
    cargo build --workspace --bins
  fi
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# require_free_port PORT NAME: exits naming the port if something listens on it.
require_free_port() {
  if ! python3 -c 'import socket, sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2> /dev/null; then
    echo "error: port $1 ($2) is already in use on 127.0.0.1: is another ./infra/run running? Stop it, or set $2 to a free port." >&2
    exit 1
  fi
}

# start_moto PORT LOG: starts moto server on 127.0.0.1:PORT, logging to LOG,
# waits until it answers, and sets MOTO_PID. The caller's EXIT trap must call stop_moto.
start_moto() {
  local port="$1" log="$2"
  mkdir -p "$(dirname "$log")"
  # moto with atomic, affordable DynamoDB transactions (see infra/local/emulator.py).
  "$VENV/bin/python" "$REPO_ROOT/infra/local/emulator.py" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2> /dev/null; then
      echo "moto server exited; see $log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "moto server did not answer on port $port within 10 s" >&2
  return 1
}

# stop_pid PID: SIGTERM, then SIGKILL after 5 s; waits for it.
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null || return 0
  kill -TERM "$pid" 2> /dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
}

stop_moto() {
  stop_pid "${MOTO_PID:-}"
}

# wait_for_file PATH PID: waits until PATH exists (a server's state file), or PID dies (60 s at most).
wait_for_file() {
  local path="$1" pid="$2"
  for _ in $(seq 1 600); do
    [ -f "$path" ] && return 0
    kill -0 "$pid" 2> /dev/null || return 1
    sleep 0.1
  done
  return 1
}

# serve_local_stack EMULATOR DIR NAME: serves a local stack of template.yaml in
# the background on a free port (log DIR/server.log, state file DIR/stack.json,
# resources named after NAME) and waits until it is up. Sets LOCAL_STACK_PID
# (the caller stops it) and LOCAL_STACK_PORT.
serve_local_stack() {
  local emulator="$1" dir="$2" name="$3"
  LOCAL_STACK_PORT="$(free_port)"
  "$(target_dir)/debug/vigil-local" serve --emulator "$emulator" --listen "127.0.0.1:$LOCAL_STACK_PORT" \
    --stack "$name$$-$RANDOM" --template "$REPO_ROOT/template.yaml" --state-file "$dir/stack.json" \
    > "$dir/server.log" 2>&1 &
  LOCAL_STACK_PID=$!
  wait_for_file "$dir/stack.json" "$LOCAL_STACK_PID" || {
    cat "$dir/server.log" >&2
    echo "the local stack did not come up (see $dir/server.log)" >&2
    return 1
  }
}

# load_demo STATE_FILE API: fills the demo tenant of a running local stack with
# about two months of 30 accounts (infra/local/demo.py, through the API), then
# issues a read-only key for the dashboard into DEMO_READ_KEY.
load_demo() {
  local state="$1" api="$2" key
  local ops=("$(target_dir)/debug/vigil-ops" --local --state-file "$state")
  key="$("${ops[@]}" key issue --tenant demo --scopes ingest,admin --name demo-data --expires-in-days 1 | awk '/^key:/ {print $2}')"
  echo "==> loading demo data: 30 accounts, about two months, through the API (a minute or two)"
  "$VENV/bin/python" "$REPO_ROOT/infra/local/demo.py" --api "$api" --key "$key"
  # The alert evaluation, as its 5-minute schedule would have run it, once a
  # day (12:00 UTC) over the two months, then now: the pages show what fired.
  echo "==> evaluating the alert rules over the two months, a day at a time"
  local back total=61
  for back in $(seq "$total" -1 1); do
    printf '{"tenant": "demo", "now": "%s"}' "$(date -u -d "-$back days" +%Y-%m-%dT12:00:00Z)" |
      "${ops[@]}" job invoke AlertsFunction --event - > /dev/null
    printf '\r    day %s of %s' "$((total - back + 1))" "$total"
  done
  echo '{"tenant": "demo"}' | "${ops[@]}" job invoke AlertsFunction --event - > /dev/null
  echo
  DEMO_READ_KEY="$("${ops[@]}" key issue --tenant demo --scopes read --name dashboard | awk '/^key:/ {print $2}')"
}
