#!/bin/bash
# `make "$@"` on an image that may not have make yet (a minimal Debian
# 12): installs make when it is missing (as root; a user with sudo gets
# sudo), then runs make from the repository root. `bash scripts/make.sh
# test` is `make test` there; .ci/run uses it only to get make.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v make >/dev/null; then
	as_root=()
	[ "$(id -u)" -eq 0 ] || as_root=(sudo)
	echo "make.sh: installing make"
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make
fi
exec make "$@"
