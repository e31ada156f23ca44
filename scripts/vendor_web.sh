#!/usr/bin/env bash
# Vendor the browser terminal (xterm.js + fit addon) and the recording player
# (asciinema-player, which replays terminal recordings on the result page) into
# src/forge/services/spawn/web/static/vendor/.
#
# Reproducible: exact versions, fetched with `npm pack` (npm checks the registry's sha512
# integrity), and the copied files are compared with the committed SHA256SUMS.
#   scripts/vendor_web.sh           fetch and verify against SHA256SUMS (fails on a difference)
#   scripts/vendor_web.sh --update  fetch and rewrite SHA256SUMS (after bumping a version)
set -euo pipefail

XTERM_VERSION="6.0.0"
FIT_VERSION="0.11.0"
PLAYER_VERSION="3.18.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/src/forge/services/spawn/web/static/vendor"
UPDATE=0
[ "${1:-}" = "--update" ] && UPDATE=1

command -v npm >/dev/null || { echo "vendor_web: npm is required (apt-get install npm)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "@xterm/xterm@$XTERM_VERSION" "@xterm/addon-fit@$FIT_VERSION" \
  "asciinema-player@$PLAYER_VERSION" >/dev/null)
mkdir -p "$work/xterm" "$work/fit" "$work/player"
tar -xzf "$work/xterm-xterm-$XTERM_VERSION.tgz" -C "$work/xterm" --strip-components=1
tar -xzf "$work/xterm-addon-fit-$FIT_VERSION.tgz" -C "$work/fit" --strip-components=1
tar -xzf "$work/asciinema-player-$PLAYER_VERSION.tgz" -C "$work/player" --strip-components=1

mkdir -p "$DEST"
install -m 0644 "$work/xterm/lib/xterm.js" "$DEST/xterm.js"
install -m 0644 "$work/xterm/css/xterm.css" "$DEST/xterm.css"
install -m 0644 "$work/xterm/LICENSE" "$DEST/LICENSE.xterm"
install -m 0644 "$work/fit/lib/addon-fit.js" "$DEST/addon-fit.js"
install -m 0644 "$work/fit/LICENSE" "$DEST/LICENSE.addon-fit"
install -m 0644 "$work/player/dist/bundle/asciinema-player.min.js" "$DEST/asciinema-player.min.js"
install -m 0644 "$work/player/dist/bundle/asciinema-player.css" "$DEST/asciinema-player.css"
install -m 0644 "$work/player/LICENSE" "$DEST/LICENSE.asciinema-player"
printf '@xterm/xterm %s\n@xterm/addon-fit %s\nasciinema-player %s\n' "$XTERM_VERSION" "$FIT_VERSION" \
  "$PLAYER_VERSION" > "$DEST/VERSIONS"

cd "$DEST"
files=(xterm.js xterm.css LICENSE.xterm addon-fit.js LICENSE.addon-fit asciinema-player.min.js
       asciinema-player.css LICENSE.asciinema-player VERSIONS)
if [ "$UPDATE" = 1 ] || [ ! -f SHA256SUMS ]; then
  sha256sum "${files[@]}" > SHA256SUMS
  echo "vendor_web: wrote $DEST/SHA256SUMS"
else
  sha256sum --check --quiet SHA256SUMS
  echo "vendor_web: vendored files match SHA256SUMS"
fi
