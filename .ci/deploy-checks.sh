#!/usr/bin/env bash
# The deployment kit, checked without a container engine (none is reachable here):
#   Dockerfile      dockerfile-utils lint (syntax and arguments) and dockerfilelint (practices), both npm;
#                   the kit's own rules (digest pin, production dependencies, non-root, no sandbox, no
#                   keys) are asserted by test/unit/deployment.test.ts
#   compose         docker compose config (plugin) or Debian's docker-compose config, on the files as written
#   Helm chart      helm lint; helm template (default values, and every option on) | kubeconform -strict
#                   against the Kubernetes 1.33 schemas of the kubernetes-validate wheel (PyPI); the
#                   ServiceMonitor (a CRD) against @kubernetes-models/prometheus-operator (npm); and a
#                   broken render that kubeconform must refuse (proves the schemas were read); the
#                   rendered eproxy.yaml parsed by eProxy's own configuration parser
#   image file set  the files the build context (.dockerignore) gives the Dockerfile, npm ci --omit=dev,
#                   run on Node.js 24: --version, sandbox refused (exit 2), serve answers /healthz, SIGTERM
# Tools are installed on first use in ~/.cache/eproxy-tools (pinned versions), helm and kubeconform by
# .ci/install-tools.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
for d in /usr/local/go/bin "$HOME/go/bin"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH
tools="$HOME/.cache/eproxy-tools"
npm_tools="$tools/deploy-npm"
k8s_version=v1.33.0
schemas="$tools/k8s-schemas/$k8s_version"
chart=deploy/helm/eproxy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
check() { # name command...
  local name=$1; shift
  if "$@"; then echo "deploy-checks: ok    $name"; else echo "deploy-checks: FAIL  $name"; fails=$((fails + 1)); fi
}

# --- tools ---------------------------------------------------------------------------------------
if [ ! -x "$npm_tools/node_modules/.bin/dockerfilelint" ] || [ ! -d "$npm_tools/node_modules/@kubernetes-models/prometheus-operator" ]; then
  mkdir -p "$npm_tools"
  npm install --prefix "$npm_tools" --no-audit --no-fund --no-save --silent \
    dockerfile-utils@0.16.3 dockerfilelint@1.8.0 @kubernetes-models/prometheus-operator@6.0.0 >/dev/null 2>&1 ||
    echo "deploy-checks: npm install of the linters failed" >&2
fi
if [ ! -f "$schemas/deployment-apps-v1.json" ]; then
  mkdir -p "$tools/wheels"
  python3 -m pip download --no-deps -q -d "$tools/wheels" kubernetes-validate==1.37.0 >/dev/null 2>&1 ||
    echo "deploy-checks: pip download kubernetes-validate failed" >&2
  node .ci/k8s-schemas.mjs "$tools/wheels/kubernetes_validate-1.37.0-py3-none-any.whl" "$k8s_version" "$schemas"
fi
command -v helm >/dev/null 2>&1 && command -v kubeconform >/dev/null 2>&1 || bash .ci/install-tools.sh helm kubeconform
# Debian's docker-compose (v1, Python) when the docker compose plugin is not there.
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null 2>&1 ||
    echo "deploy-checks: apt-get install docker-compose failed" >&2
fi

# --- Dockerfile ----------------------------------------------------------------------------------
check "Dockerfile: dockerfile-utils lint" "$npm_tools/node_modules/.bin/dockerfile-utils" lint Dockerfile
check "Dockerfile: dockerfilelint" "$npm_tools/node_modules/.bin/dockerfilelint" -c .ci Dockerfile

# What the image holds, run without an engine: the build context (.dockerignore) of the files the
# Dockerfile copies, production dependencies only, on the repository's Node.js 24. It must print its
# version, refuse the development commands with exit 2, serve /healthz and stop cleanly on SIGTERM.
image_file_set() {
  local img="$work/image" node24 port pki pid rc=0
  node24=$(readlink -f node_modules/.bin/node)
  mkdir -p "$img"
  git ls-files | "$node24" .ci/docker-context.ts | grep -E '^(package\.json|package-lock\.json|bin/|gen/|src/)' |
    while read -r f; do mkdir -p "$img/$(dirname "$f")" && cp "$f" "$img/$f"; done
  (cd "$img" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --silent >/dev/null 2>&1) || { echo "image: npm ci --omit=dev failed"; return 1; }
  [ ! -e "$img/src/sandbox" ] && [ ! -e "$img/node_modules/oidc-provider" ] || { echo "image: sandbox code or packages present"; return 1; }
  "$node24" "$img/bin/eproxy.js" --version || return 1
  (cd "$img" && "$node24" bin/eproxy.js sandbox >/dev/null 2>&1); [ $? -eq 2 ] || { echo "image: sandbox did not exit 2"; return 1; }
  pki="$work/pki"
  "$node24" bin/eproxy.js certs --dir "$pki" --client lps-demo >/dev/null || return 1
  port=$("$node24" -e "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  cat > "$work/image.yaml" <<YAML
server: {listenAddress: 127.0.0.1, port: $port, tls: {certFile: $pki/server.pem, keyFile: $pki/server-key.pem}}
psc: {discoveryUrl: "https://127.0.0.1:9/.well-known/openid-configuration", caFile: $pki/ca.pem}
clients: [{id: lps-demo, certFile: $pki/clients/lps-demo.pem, keyFile: $pki/clients/lps-demo-key.pem}]
log: {level: warn}
YAML
  (cd "$img" && EPROXY_STATE_DIR="$work/state" exec "$node24" bin/eproxy.js serve --config "$work/image.yaml") >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 60); do
    curl -fsS --cacert "$pki/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS --cacert "$pki/ca.pem" "https://127.0.0.1:$port/healthz" || rc=1
  echo
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" || rc=1
  [ "$rc" -eq 0 ] || cat "$work/serve.log"
  return "$rc"
}
check "image file set: production dependencies only, serves /healthz, no sandbox" image_file_set

# --- docker-compose.yml --------------------------------------------------------------------------
# As written, with the secret files make-secrets.sh creates (placeholders here: compose checks that
# they exist, not what they hold).
mkdir -p "$work/compose/deploy/secrets"
cp docker-compose.yml "$work/compose/"
cp -r deploy/compose deploy/eproxy.yaml "$work/compose/deploy/"
for f in $(sed -n 's#^ *file: \./deploy/secrets/##p' docker-compose.yml); do echo placeholder > "$work/compose/deploy/secrets/$f"; done
compose_config() {
  if docker compose version >/dev/null 2>&1; then
    (cd "$work/compose" && docker compose config -q)
  elif command -v docker-compose >/dev/null 2>&1; then
    (cd "$work/compose" && docker-compose config -q)
  else
    echo "deploy-checks: neither docker compose nor docker-compose is installed" >&2
    return 1
  fi
}
check "docker-compose.yml: compose config" compose_config
# Negative control: a key the compose specification does not have must be refused.
compose_refuses() {
  cp "$work/compose/docker-compose.yml" "$work/compose/good.yml"
  sed -i 's/^    read_only: true$/    read_only: true\n    read_onyl: true/' "$work/compose/docker-compose.yml"
  ! compose_config >/dev/null 2>&1
  local rc=$?
  mv "$work/compose/good.yml" "$work/compose/docker-compose.yml"
  return $rc
}
check "compose config refuses an unknown key (negative control)" compose_refuses

# --- Helm chart ----------------------------------------------------------------------------------
check "helm lint" helm lint --strict "$chart" --kube-version "${k8s_version#v}"
all_on=(--set admin.enabled=true --set serviceMonitor.enabled=true --set probes.grpc.enabled=true
  --set autoscaling.enabled=false --set state.existingClaim=eproxy-state --set image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000
  --set-string 'secretFiles.files.tls\.crt=eA==')
helm template eproxy "$chart" --kube-version "${k8s_version#v}" > "$work/default.yaml" &&
  helm template eproxy "$chart" --kube-version "${k8s_version#v}" "${all_on[@]}" > "$work/all-on.yaml"
kubeconform_strict() {
  kubeconform -strict -summary -skip ServiceMonitor \
    -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}
check "helm template | kubeconform -strict (default values)" kubeconform_strict "$work/default.yaml"
check "helm template | kubeconform -strict (every option on)" kubeconform_strict "$work/all-on.yaml"
check "ServiceMonitor schema (prometheus-operator)" \
  env EPROXY_DEPLOY_TOOLS="$npm_tools" node .ci/validate-servicemonitor.mjs < "$work/all-on.yaml"
check "the chart's configuration is valid for eproxy (default values)" \
  npx --no-install node .ci/chart-config.mjs < "$work/default.yaml"
check "the chart's configuration is valid for eproxy (every option on)" \
  npx --no-install node .ci/chart-config.mjs < "$work/all-on.yaml"
# Negative control: a field the Deployment schema does not have must be refused.
sed 's/^  replicas:/  replicaz:/; s/^  selector:/  selectorz:/' "$work/default.yaml" > "$work/broken.yaml"
refused() { ! kubeconform_strict "$work/broken.yaml" >/dev/null; }
check "kubeconform refuses a broken Deployment (negative control)" refused

echo "deploy-checks: $fails failed"
[ "$fails" -eq 0 ]
