#!/usr/bin/env bash
# Installs the real peers and checkers the test tiers and CI steps use, each only when missing:
# Debian: redis-server, nginx, wrk, openssl, jq (the documentation's examples, run by doc-blocks.e2e); Go module proxy: Toxiproxy, promtool, helm, kubeconform,
# grpc-health-probe, vegeta, grpcurl, Jaeger (all-in-one, OTLP receiver). Binaries land in ~/go/bin.
# Usage: .ci/install-tools.sh [tool...]   (no argument: every tool)
set -uo pipefail
for d in /usr/local/go/bin "$HOME/go/bin"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH GOFLAGS=-mod=mod
GOBIN="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
mkdir -p "$GOBIN"
rc=0

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$GOBIN/$1" ]; }
apt_pkg() { # command package
  have "$1" && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 || { echo "install-tools: apt-get install $2 failed" >&2; rc=1; }
}
go_tool() { # command module@version
  have "$1" && return 0
  echo "install-tools: go install $2" >&2
  go install "$2" >/dev/null 2>&1 || { echo "install-tools: go install $2 failed" >&2; rc=1; }
}
build_jaeger() {
  have jaeger && return 0
  local mod="$HOME/.cache/eproxy-tools/jaeger"
  mkdir -p "$mod"
  echo "install-tools: building Jaeger v1.76.0 (OTLP receiver)" >&2
  (cd "$mod" && { [ -f go.mod ] || go mod init eproxy-tools/jaeger >/dev/null 2>&1; } &&
    go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0 >/dev/null 2>&1 &&
    go build -o "$GOBIN/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger) ||
    { echo "install-tools: Jaeger build failed" >&2; rc=1; }
}

want() { [ $# -eq 0 ] && return 0; }
tools=("$@")
[ ${#tools[@]} -eq 0 ] && tools=(redis-server nginx wrk openssl jq toxiproxy-server promtool helm kubeconform grpc-health-probe vegeta grpcurl jaeger)
for t in "${tools[@]}"; do
  case "$t" in
    redis-server) apt_pkg redis-server redis-server ;;
    nginx) apt_pkg nginx nginx ;;
    wrk) apt_pkg wrk wrk ;;
    openssl) apt_pkg openssl openssl ;;
    jq) apt_pkg jq jq ;;
    toxiproxy-server)
      go_tool server github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0
      [ -x "$GOBIN/server" ] && [ ! -e "$GOBIN/toxiproxy-server" ] && mv "$GOBIN/server" "$GOBIN/toxiproxy-server" ;;
    promtool) go_tool promtool github.com/prometheus/prometheus/cmd/promtool@v0.316.0 ;;
    helm) go_tool helm helm.sh/helm/v3/cmd/helm@v3.22.0 ;;
    kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform@latest ;;
    grpc-health-probe) go_tool grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe@v0.4.62 ;;
    vegeta) go_tool vegeta github.com/tsenart/vegeta/v12@v12.13.0 ;;
    grpcurl) go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@latest ;;
    jaeger) build_jaeger ;;
    *) echo "install-tools: unknown tool $t" >&2; rc=1 ;;
  esac
done
exit $rc
