# Sourced by the example scripts (.ci/java-client.sh, .ci/spring-boot.sh): starts `eproxy sandbox` on
# a free port in a temporary directory and waits until it serves. Sets: work (the temporary
# directory, removed on exit), certs, port, url, api_key (lps-demo's), sandbox_pid; defines
# diagnose (what the sandbox said, for a failure) and maven (quiet batch Maven with ~/.m2).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node="$root/node_modules/.bin/node"
work="$(mktemp -d)"
certs="$work/certs"
sandbox_pid=""
cleanup() {
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Maven 3.8 prints bare colour resets even in batch mode: dropped (the callers run with pipefail).
maven() { mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$HOME/.m2/repository" "$@" 2>&1 | sed 's/\x1b\[0m//g'; }

# What the sandbox said, and whether it still runs, when something fails (a busy CI machine once saw
# "connection refused" from the Java client right after the banner).
diagnose() {
  echo "sandbox $(kill -0 "$sandbox_pid" 2>/dev/null && echo running || echo "NOT running") on port ${port:-?}" >&2
  tail -n 20 "$work/sandbox.err" >&2 || true
  grep -v '^{"level":"info"' "$work/sandbox.out" | tail -n 20 >&2 || true
}

start_sandbox() {
  (cd "$work" && exec "$node" "$root/bin/eproxy.js" sandbox --port 0 --dir "$certs" --approve-after-ms 300 \
    >"$work/sandbox.out" 2>"$work/sandbox.err") &
  sandbox_pid=$!
  port=""
  for _ in $(seq 1 300); do
    port="$(sed -n 's|^eProxy sandbox ready on https://localhost:\([0-9]*\).*|\1|p' "$work/sandbox.out" 2>/dev/null | head -1)"
    [ -n "$port" ] && break
    kill -0 "$sandbox_pid" 2>/dev/null || { diagnose; echo "sandbox exited" >&2; return 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { diagnose; echo "sandbox did not start" >&2; return 1; }
  url="https://localhost:$port"
  # Serving, not only printed: /healthz answers before a client starts.
  for _ in $(seq 1 300); do
    curl -sf --cacert "$certs/ca.pem" "$url/healthz" >/dev/null && break
    kill -0 "$sandbox_pid" 2>/dev/null || { diagnose; echo "sandbox exited" >&2; return 1; }
    sleep 0.1
  done
  api_key="$("$node" -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))["lps-demo"].key)' \
    "$certs/sandbox-api-keys.json")"
  [ -n "$api_key" ] || { echo "no API key for lps-demo in $certs/sandbox-api-keys.json" >&2; return 1; }
}

# What the sandbox's printed commands do first: log the demo doctor in (here in one blocking REST
# call), so that the next login of the same professional by the same client meets the live session.
login_doctor_like_the_banner() {
  curl -sf --cacert "$certs/ca.pem" -H "x-eproxy-api-key: $api_key" -H 'content-type: application/json' \
    "$url/oauth2/ciba" -d '{"clientId":"lps-demo","nationalId":"899700218896","channel":"MOBILE","bindingMessage":"42"}' \
    | grep -q '"status":"APPROVED"'
}

# Fails unless every following argument occurs in file $1.
expect_lines() {
  local file=$1; shift
  local line
  for line in "$@"; do
    grep -qF -- "$line" "$file" || { echo "missing '$line' in the output" >&2; return 1; }
  done
}
