#!/usr/bin/env bash
# Builds FerretDB v1.24.2 (MongoDB-wire server, SQLite backend) into .ci/bin/ferretdb.
# `go install` alone yields a binary that panics: the module lacks build/version/version.txt,
# which FerretDB embeds at build time. So build from a copy of the module with that file written.
# Version output is read whole (sed, grep without -q): with pipefail, a reader that stops early
# (head -1, grep -q) makes ferretdb die of SIGPIPE on a busy machine and the step fail.
set -euo pipefail
cd "$(dirname "$0")"
BIN="$PWD/bin/ferretdb"
[ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1 && exit 0
mkdir -p bin
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  # No Go toolchain: reuse an already built FerretDB v1.24.2 if there is one.
  for c in "$(command -v ferretdb || true)" "$HOME/go/bin/ferretdb"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" --version 2>/dev/null | grep 'v1.24.2' >/dev/null; then
      ln -sf "$c" "$BIN"; "$BIN" --version | sed -n 1p; exit 0
    fi
  done
  echo "Go is required to build FerretDB (https://go.dev/dl/), none found on PATH" >&2
  exit 1
fi
export GOFLAGS=-mod=mod
go mod download github.com/FerretDB/FerretDB@v1.24.2
SRC="$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@v1.24.2"
WORK=$(mktemp -d)
cp -r "$SRC/." "$WORK/"
chmod -R u+w "$WORK"
echo v1.24.2 > "$WORK/build/version/version.txt"
(cd "$WORK" && go build -o "$BIN" ./cmd/ferretdb)
rm -rf "$WORK"
"$BIN" --version | sed -n 1p
