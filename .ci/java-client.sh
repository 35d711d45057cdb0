#!/usr/bin/env bash
# The Java client example (examples/java-client) against a sandbox: builds the stubs from proto/ with
# protoc + protoc-gen-grpc-java from Maven Central, then StartCiba + WatchCiba + ForwardSoap with a
# client certificate. Maven's cache is ~/.m2/repository (warm after the first run).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
node="$root/node_modules/.bin/node"
work="$(mktemp -d)"
out="$work/sandbox.out"
sandbox_pid=""
cleanup() {
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Compile first (the slow part on a cold cache) so the sandbox does not wait for Maven.
mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$HOME/.m2/repository" -f "$root/examples/java-client/pom.xml" compile

(cd "$work" && exec "$node" "$root/bin/eproxy.js" sandbox --port 0 --dir "$work/certs" --approve-after-ms 300 \
  >"$out" 2>"$work/sandbox.err") &
sandbox_pid=$!
for _ in $(seq 1 300); do
  grep -q "Ctrl-C stops it" "$out" 2>/dev/null && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$work/sandbox.err" >&2; echo "sandbox exited" >&2; exit 1; }
  sleep 0.1
done
port="$(sed -n 's|^eProxy sandbox ready on https://localhost:\([0-9]*\) .*|\1|p' "$out")"
[ -n "$port" ] || { echo "sandbox did not start" >&2; cat "$out" "$work/sandbox.err" >&2; exit 1; }
# What the sandbox said, and whether it still runs, when something below fails (a busy CI machine once
# saw "connection refused" from the Java client right after the banner).
diagnose() {
  echo "java-client: sandbox $(kill -0 "$sandbox_pid" 2>/dev/null && echo running || echo "NOT running") on port $port" >&2
  tail -n 20 "$work/sandbox.err" >&2 || true
  grep -v '^{"level":"info"' "$out" | tail -n 20 >&2 || true
}
# Serving, not only printed: /healthz answers before the client starts.
for _ in $(seq 1 300); do
  curl -sf --cacert "$work/certs/ca.pem" "https://localhost:$port/healthz" >/dev/null && break
  kill -0 "$sandbox_pid" 2>/dev/null || { diagnose; echo "sandbox exited" >&2; exit 1; }
  sleep 0.1
done

log="$work/java.out"
if ! mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$HOME/.m2/repository" -f "$root/examples/java-client/pom.xml" exec:java \
  -Dexec.args="localhost:$port $work/certs/ca.pem $work/certs/clients/lps-demo.pem $work/certs/clients/lps-demo-key.pem 899700218896 $work/certs/insi-request.xml" \
  | tee "$log"; then
  diagnose
  exit 1
fi
for expected in "WatchCiba: status=CIBA_STATUS_APPROVED" "ForwardSoap: statusCode=200" "INSi CodeCR: 00" \
  "GetSession with a bad token: UNAUTHENTICATED ErrorInfo.reason=SESSION_INVALID (domain eproxy.fr)"; do
  grep -qF "$expected" "$log" || { echo "java-client: missing '$expected' in the output" >&2; exit 1; }
done
echo "java-client: CIBA login and ForwardSoap through grpc-java OK"
