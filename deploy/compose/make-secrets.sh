#!/usr/bin/env bash
# Writes the secrets docker-compose.yml reads into deploy/secrets/ (mode 600, never committed): random
# passwords for Redis and MongoDB with the matching URLs, a key for the encryption key ring, and, unless
# present, a development PKI for a first start. Replace the certificates by your organisation's (server
# certificate for your host name; IGC-Santé client certificate and key) before talking to PSC.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=deploy/secrets
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
rand() { openssl rand -hex 24; }
put() { [ -s "$dir/$1" ] || printf '%s' "$2" > "$dir/$1"; }

put redis-password "$(rand)"
put redis-url "redis://:$(cat "$dir/redis-password")@redis:6379/0"
put mongodb-root-password "$(rand)"
put mongodb-eproxy-password "$(rand)"
put mongodb-url "mongodb://eproxy:$(cat "$dir/mongodb-eproxy-password")@mongo:27017/eproxy?authSource=eproxy"
put encryption-key-k1 "$(openssl rand -base64 32)"

if [ ! -s "$dir/server.pem" ]; then
  # Development certificates (eproxy certs needs the development dependencies: npm ci).
  npx --no-install node bin/eproxy.js certs --dir "$dir/dev-pki" --client my-lps >/dev/null
  cp "$dir/dev-pki/server.pem" "$dir/server.pem"
  cp "$dir/dev-pki/server-key.pem" "$dir/server-key.pem"
  cp "$dir/dev-pki/ca.pem" "$dir/client-ca.pem"
  cp "$dir/dev-pki/clients/my-lps.pem" "$dir/client.pem"
  cp "$dir/dev-pki/clients/my-lps-key.pem" "$dir/client-key.pem"
  echo "development certificates written: replace them before talking to PSC" >&2
fi
# Compose secrets are bind mounts seen with their host mode, and each container reads them as its own
# user (eProxy: uid 1000; MongoDB's init script: mongodb): the files are readable by all, and the
# directory (mode 700) is what keeps them from other users of this host.
find "$dir" -maxdepth 1 -type f -exec chmod 644 {} +
echo "secrets in $dir"
