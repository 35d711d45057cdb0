#!/usr/bin/env bash
# The Spring Boot example (examples/spring-boot) against a sandbox: login over gRPC, INSi relay over
# REST /send with WebClient, two typed errors; run twice: with the client certificate (a first login),
# then with the API key (the session-reuse trap: StartCiba answers reused without a token and the
# example asks again with new_session). Maven's cache is ~/.m2/repository (warm after the first run).
set -euo pipefail
source "$(dirname "$0")/example-sandbox.sh"
dir="$root/examples/spring-boot"

# Build first (the slow part on a cold cache) so the sandbox does not wait for Maven.
maven -f "$dir/pom.xml" package -DskipTests
jar="$dir/target/eproxy-spring-boot-example.jar"
start_sandbox

run() { # $1: log file; the rest: Spring arguments
  local log=$1; shift
  # C1 only: a short-lived run starts faster without the optimizing compiler.
  if ! java -XX:TieredStopAtLevel=1 -jar "$jar" --eproxy.url="$url" --eproxy.certs="$certs" "$@" | tee "$log"; then
    diagnose
    return 1
  fi
  expect_lines "$log" "WatchCiba: CIBA_STATUS_APPROVED" "Logged in: Camille SANDBOX-MEDECIN" \
    "INSi answered 200" "CodeCR 00" \
    "Typed error from /send: EproxyException code=NOT_FOUND status=404" \
    "Typed error from gRPC: SessionInvalidException code=SESSION_INVALID" \
    "eProxy Spring Boot example: OK"
}
run "$work/mtls.out"
expect_lines "$work/mtls.out" "authenticated by client certificate (mTLS)" "StartCiba: reused=false newSession=false"
EPROXY_API_KEY="$api_key" run "$work/api-key.out" --spring.profiles.active=api-key
expect_lines "$work/api-key.out" "authenticated by API key (x-eproxy-api-key)" \
  "StartCiba: reused=true newSession=false" "asking again with new_session=true"
echo "spring-boot: login (gRPC), INSi relay (WebClient), typed errors OK, twice (mTLS, then API key after a reuse)"
