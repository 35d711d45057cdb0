#!/usr/bin/env bash
# The Java client example (examples/java-client) against a sandbox: builds the stubs from proto/ with
# protoc + protoc-gen-grpc-java from Maven Central, then StartCiba + WatchCiba + ForwardSoap, twice:
# with the client certificate after the sandbox's own commands logged the doctor in (the session-reuse
# trap: StartCiba answers reused without a token, the example asks again with new_session), then with
# the API key. Maven's cache is ~/.m2/repository (warm after the first run).
set -euo pipefail
source "$(dirname "$0")/example-sandbox.sh"
pom="$root/examples/java-client/pom.xml"

# Compile first (the slow part on a cold cache) so the sandbox does not wait for Maven.
maven -f "$pom" compile
start_sandbox
login_doctor_like_the_banner || { diagnose; echo "java-client: the banner's REST login failed" >&2; exit 1; }

run() { # $1: log file; the rest: the credential arguments
  local log=$1; shift
  if ! maven -f "$pom" exec:java \
    -Dexec.args="localhost:$port $certs/ca.pem $* 899700218896 $certs/insi-request.xml" | tee "$log"; then
    diagnose
    return 1
  fi
}
run "$work/mtls.out" "$certs/clients/lps-demo.pem $certs/clients/lps-demo-key.pem"
EPROXY_API_KEY="$api_key" run "$work/api-key.out" --api-key
for log in "$work/mtls.out" "$work/api-key.out"; do
  expect_lines "$log" "reused=true" "asking again with new_session=true" "WatchCiba: status=CIBA_STATUS_APPROVED" \
    "ForwardSoap: statusCode=200" "INSi CodeCR: 00" \
    "GetSession with a bad token: UNAUTHENTICATED ErrorInfo.reason=SESSION_INVALID (domain eproxy.fr)"
done
expect_lines "$work/mtls.out" "authenticated by client certificate"
expect_lines "$work/api-key.out" "authenticated by API key"
echo "java-client: CIBA login and ForwardSoap through grpc-java OK, twice (mTLS, then API key), session reuse handled"
