#!/usr/bin/env bash
# Refreshes the console's vendored hls.js (internal/console/web/static/vendor/hls.js/):
# the npm package's minified build, its license (Apache-2.0) and its version. npm pack
# checks the tarball against the registry's integrity hash. The files are committed, so
# building and testing the console need no network; run this to move to another version:
#
#	scripts/refresh-hlsjs.sh [version]   (default: the version in VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=internal/console/web/static/vendor/hls.js
version="${1:-$(cat "$dest/VERSION" 2>/dev/null || echo latest)}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarball=$(cd "$tmp" && npm pack --silent "hls.js@$version")
tar -xzf "$tmp/$tarball" -C "$tmp"
version=$(node -p 'require(process.argv[1]).version' "$tmp/package/package.json")
license=$(node -p 'require(process.argv[1]).license' "$tmp/package/package.json")
if [ "$license" != "Apache-2.0" ]; then
	echo "hls.js $version is under $license, not Apache-2.0: check it before vendoring" >&2
	exit 1
fi
mkdir -p "$dest"
cp "$tmp/package/dist/hls.min.js" "$dest/hls.min.js"
cp "$tmp/package/LICENSE" "$dest/LICENSE"
echo "$version" >"$dest/VERSION"
echo "hls.js $version ($license) vendored into $dest"
