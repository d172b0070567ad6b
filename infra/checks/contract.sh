# shellcheck shell=bash
# Sourced by infra/test once moto runs (MOTO port in $1): serves the stack on a
# free port, issues one key per scope with the operator CLI, and runs
# schemathesis against openapi.yaml, each scope's operations with its own key.
# Bounded: examples per operation (VIGIL_ST_EXAMPLES, default 25) and a fixed
# seed, so CI stays fast and a failure reproduces. Every check runs but
# `unsupported_method`: API Gateway answers a method without a route with 404
# `{"message":"Not Found"}`, not 405, and the local stack answers as it does.

# seed_events API KEY: one event per source for account `acme`, in the last hours.
seed_events() {
  "$VENV/bin/python" - "$1" "$2" <<'PY'
import datetime, json, sys, urllib.request
api, key = sys.argv[1], sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
def at(hours):
    return (now - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
data = {
    "api_call": {"endpoint": "/v1/pay", "method": "POST", "status": 503, "latency_ms": 120},
    "product": {"feature": "export"},
    "marketing": {"campaign": "spring", "channel": "email"},
    "support_ticket": {"ticket_id": "T-1", "priority": "high", "status": "open"},
    "billing": {"invoice_id": "INV-1", "amount": 120.5, "currency": "EUR", "status": "failed"},
}
events = [{"id": f"seed-{i}", "time": at(i % 3 + 1), "source": source, "account": "acme", "user": f"u-{i}", "data": body}
          for i, (source, body) in enumerate(data.items())]
request = urllib.request.Request(f"{api}/v1/events", data=json.dumps({"events": events}).encode(),
                                 headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
answer = json.load(urllib.request.urlopen(request))
assert answer["accepted"] == len(events), answer
print(f"    seeded {answer['accepted']} events for account acme")
PY
}

# Contact fields for the contract's example user (user-42).
seed_subject() {
  local url="$1" key="$2"
  "$VENV/bin/python" - "$url" "$key" <<'PY'
import json, sys, urllib.request
url, key = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    f"{url}/v1/subjects/user-42", method="PUT",
    data=json.dumps({"email": "user42@example.com", "name": "User Forty-Two"}).encode(),
    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
with urllib.request.urlopen(request) as response:
    assert response.status in (200, 201), response.status
print("    seeded the contact fields of user-42")
PY
}

contract_check() {
  local emulator="$1" dir port state key scope
  dir="$(target_dir)/contract-check"
  rm -rf "$dir" && mkdir -p "$dir"
  state="$dir/stack.json"
  serve_local_stack "$emulator" "$dir" contract || return 1
  CONTRACT_PID="$LOCAL_STACK_PID"
  port="$LOCAL_STACK_PORT"
  local ops=("$(target_dir)/debug/vigil-ops" --local --state-file "$state")
  "${ops[@]}" tenant create schemathesis > /dev/null
  local status=0
  local phases
  for scope in ingest read admin privacy; do
    key="$("${ops[@]}" key issue --tenant schemathesis --scopes "$scope" --name "st-$scope" | awk '/^key:/ {print $2}')"
    # Stateful sequences follow the contract's links (issue a key, then list
    # and revoke it; submit a privacy request, then show it).
    phases=examples,coverage,fuzzing
    case "$scope" in admin | privacy) phases="$phases,stateful" ;; esac
    if [ "$scope" = privacy ]; then
      # The person the contract's examples name, so that requests about them
      # are carried out, not only refused with 404.
      seed_subject "http://127.0.0.1:$port" "$key"
    fi
    if [ "$scope" = ingest ]; then
      # Events for the account the contract's examples name, so that the read
      # operations answer with real hours, not only empty lists.
      seed_events "http://127.0.0.1:$port" "$key"
    fi
    echo "==> schemathesis: the $scope operations, with a $scope key ($phases)"
    # From the check's own folder: schemathesis keeps a cache where it runs.
    (cd "$dir" && "$VENV/bin/st" --config-file "$REPO_ROOT/infra/checks/schemathesis.toml" run "$REPO_ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
      --header "Authorization: Bearer $key" --include-tag "$scope" \
      --checks all --exclude-checks unsupported_method \
      --max-examples "${VIGIL_ST_EXAMPLES:-25}" --seed 1 --phases "$phases" \
      --report junit --report-dir "$dir/reports-$scope") || status=1
  done
  echo "==> schemathesis: the contract and the dashboard's web page, without a key"
  (cd "$dir" && "$VENV/bin/st" --config-file "$REPO_ROOT/infra/checks/schemathesis.toml" run "$REPO_ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
    --include-tag contract --include-tag web --checks all --exclude-checks unsupported_method \
    --max-examples 5 --seed 1 --phases examples,coverage,fuzzing) || status=1
  stop_pid "$CONTRACT_PID"
  CONTRACT_PID=""
  return "$status"
}
