#!/usr/bin/env bash
# Builds the previous release's corrald and corral (the commit in PREVIOUS_RELEASE, format v0)
# into target/previous/bin, for the mixed-version and rolling-upgrade tests. A full build of its
# own (its own target dir, its own Cargo.lock); skipped when the binaries of that commit exist.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
commit=$(tr -d '[:space:]' < deploy/upgrade/PREVIOUS_RELEASE)
out=target/previous
if [ -x "$out/bin/corrald" ] && [ "$(cat "$out/bin/COMMIT" 2>/dev/null)" = "$commit" ]; then
  exit 0
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null && [ "$(git rev-parse --is-shallow-repository)" = true ]; then
  git fetch --quiet --unshallow || true
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
  echo "previous release: commit $commit is not in this clone's history (a shallow clone?): fetch it with 'git fetch --unshallow'" >&2
  exit 1
fi
echo "previous release: building $commit into $out/bin (a full build of its own)" >&2
rm -rf "$out/src"
mkdir -p "$out/src" "$out/bin"
git archive "$commit" | tar -x -C "$out/src"
cargo build --quiet --manifest-path "$out/src/Cargo.toml" --target-dir "$out/target" --bins -p corral-node -p corral-cli
cp "$out/target/debug/corrald" "$out/target/debug/corral" "$out/bin/"
echo "$commit" > "$out/bin/COMMIT"
