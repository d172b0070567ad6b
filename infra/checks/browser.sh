# shellcheck shell=bash
# Sourced by infra/test once moto runs: the dashboard in headless Chromium.
# Installs Debian's chromium if it is missing (apt-get, as root) and Playwright
# for Python into .venv-browser (no browser download: it drives /usr/bin/chromium),
# serves a local stack on a free port, fills it with the demo data, and runs
# infra/checks/browser.py. Screenshots: target/browser-check/*.png.

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium for the browser check (apt-get, once per machine)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
  fi
}

browser_check() {
  local emulator="$1" dir port state
  ensure_chromium
  install_venv "$REPO_ROOT/.venv-browser" "$REPO_ROOT/infra/requirements-browser.txt" "Playwright for Python (it drives Debian's chromium)"
  dir="$(target_dir)/browser-check"
  rm -rf "$dir" && mkdir -p "$dir"
  state="$dir/stack.json"
  serve_local_stack "$emulator" "$dir" browser || return 1
  BROWSER_PID="$LOCAL_STACK_PID"
  port="$LOCAL_STACK_PORT"
  load_demo "$state" "http://127.0.0.1:$port"
  echo "==> the dashboard in headless Chromium: key, sort, filter, an account's charts"
  local status=0
  "$REPO_ROOT/.venv-browser/bin/python" "$REPO_ROOT/infra/checks/browser.py" \
    "http://127.0.0.1:$port" "$DEMO_READ_KEY" "$dir" || status=1
  stop_pid "$BROWSER_PID"
  BROWSER_PID=""
  return "$status"
}
