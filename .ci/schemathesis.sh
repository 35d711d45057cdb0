#!/usr/bin/env bash
# Schemathesis against the sandbox: starts `eproxy sandbox` on free ports, signs the demo doctor in
# twice (one session for the run, one for the logout operation), then runs every phase and every check
# of Schemathesis on src/rest/openapi.json with a bounded number of examples per operation. Zero
# failures expected. Python's venv goes to .ci/bin/schemathesis-venv (kept between runs).
#   SCHEMATHESIS_EXAMPLES (default 100) examples per operation and phase; SCHEMATHESIS_SEED (fixed by
#   default, so that a failure is reproducible; "random" for a new one).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
node="$root/node_modules/.bin/node"
version=4.32.5
venv="$root/.ci/bin/schemathesis-venv"
examples="${SCHEMATHESIS_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-20261204}"

if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi

work="$(mktemp -d)"
sandbox_pid=""
cleanup() {
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec "$node" "$root/bin/eproxy.js" sandbox --port 0 --dir "$work/certs" --approve-after-ms 200 \
  >"$work/sandbox.out" 2>"$work/sandbox.err") &
sandbox_pid=$!
for _ in $(seq 1 300); do
  grep -q "Ctrl-C stops it" "$work/sandbox.out" 2>/dev/null && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$work/sandbox.err" >&2; echo "sandbox exited" >&2; exit 1; }
  sleep 0.1
done
port="$(sed -n 's|^eProxy sandbox ready on https://localhost:\([0-9]*\) .*|\1|p' "$work/sandbox.out")"
[ -n "$port" ] || { echo "sandbox did not start" >&2; cat "$work/sandbox.err" >&2; exit 1; }
url="https://localhost:$port"
ca="$work/certs/ca.pem"
EPROXY_API_KEY="$("$node" -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))["lps-demo"].key' \
  "$work/certs/sandbox-api-keys.json")"
login() {
  curl -sS --fail-with-body --cacert "$ca" -H "x-eproxy-api-key: $EPROXY_API_KEY" -H 'content-type: application/json' \
    "$url/oauth2/ciba" -d '{"nationalId":"899700218896","newSession":true}' |
    "$node" -e 'let s="";process.stdin.on("data",(c)=>s+=c).on("end",()=>console.log(JSON.parse(s).session.sessionToken))'
}
EPROXY_SESSION="$(login)"
EPROXY_LOGOUT_SESSION="$(login)"
export EPROXY_API_KEY EPROXY_SESSION EPROXY_LOGOUT_SESSION

seed_args=()
[ "$seed" = random ] || seed_args=(--seed "$seed")
mkdir -p "$root/.ci/out"
started=$(date +%s)
rc=0
# From the scratch directory: Schemathesis keeps its example cache in ./.schemathesis.
(cd "$work" && "$venv/bin/st" --config-file "$root/.ci/schemathesis.toml" run "$root/src/rest/openapi.json" \
  --url "$url" --tls-verify "$ca" --max-examples "$examples" "${seed_args[@]}" \
  --request-timeout 30 --no-color --report junit --report-junit-path "$root/.ci/out/schemathesis.xml") || rc=$?
echo "schemathesis: $examples examples per operation, $(($(date +%s) - started)) s, exit $rc"
if [ "$rc" -ne 0 ]; then
  echo "--- sandbox stderr (tail)" >&2
  tail -n 30 "$work/sandbox.err" >&2 || true
fi
exit "$rc"
