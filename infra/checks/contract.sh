# shellcheck shell=bash
# Sourced by infra/test once moto runs (MOTO port in $1): serves the stack on a
# free port, issues one key per scope with the operator CLI, and runs
# schemathesis against openapi.yaml, each scope's operations with its own key.
# Bounded: examples per operation (VIGIL_ST_EXAMPLES, default 25) and a fixed
# seed, so CI stays fast and a failure reproduces. Every check runs but
# `unsupported_method`: API Gateway answers a method without a route with 404
# `{"message":"Not Found"}`, not 405, and the local stack answers as it does.

contract_check() {
  local emulator="$1" dir port state key scope
  dir="$(target_dir)/contract-check"
  rm -rf "$dir" && mkdir -p "$dir"
  port="$(free_port)"
  state="$dir/stack.json"
  "$(target_dir)/debug/vigil-local" serve --emulator "$emulator" --listen "127.0.0.1:$port" \
    --stack "contract$$-$RANDOM" --template "$REPO_ROOT/template.yaml" --state-file "$state" \
    > "$dir/server.log" 2>&1 &
  CONTRACT_PID=$!
  for _ in $(seq 1 300); do
    [ -f "$state" ] && break
    kill -0 "$CONTRACT_PID" 2> /dev/null || { cat "$dir/server.log" >&2; return 1; }
    sleep 0.1
  done
  [ -f "$state" ] || { echo "the local stack did not come up (see $dir/server.log)" >&2; return 1; }
  local ops=("$(target_dir)/debug/vigil-ops" --local --state-file "$state")
  "${ops[@]}" tenant create schemathesis > /dev/null
  local status=0
  local phases
  for scope in ingest read admin; do
    key="$("${ops[@]}" key issue --tenant schemathesis --scopes "$scope" --name "st-$scope" | awk '/^key:/ {print $2}')"
    # Stateful sequences follow the contract's links (issue a key, then list
    # and revoke it): only the admin operations have them.
    phases=examples,coverage,fuzzing
    [ "$scope" != admin ] || phases="$phases,stateful"
    echo "==> schemathesis: the $scope operations, with a $scope key ($phases)"
    # From the check's own folder: schemathesis keeps a cache where it runs.
    (cd "$dir" && "$VENV/bin/st" --config-file "$REPO_ROOT/infra/checks/schemathesis.toml" run "$REPO_ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
      --header "Authorization: Bearer $key" --include-tag "$scope" \
      --checks all --exclude-checks unsupported_method \
      --max-examples "${VIGIL_ST_EXAMPLES:-25}" --seed 1 --phases "$phases" \
      --report junit --report-dir "$dir/reports-$scope") || status=1
  done
  echo "==> schemathesis: the contract itself, without a key"
  (cd "$dir" && "$VENV/bin/st" --config-file "$REPO_ROOT/infra/checks/schemathesis.toml" run "$REPO_ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
    --include-tag contract --checks all --exclude-checks unsupported_method \
    --max-examples 5 --seed 1 --phases examples,coverage,fuzzing) || status=1
  stop_pid "$CONTRACT_PID"
  CONTRACT_PID=""
  return "$status"
}
