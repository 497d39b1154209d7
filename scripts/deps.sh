#!/bin/bash
# Installs every build, test and demo dependency on Debian 12; idempotent.
set -euo pipefail
PKGS=(make gcc clang llvm pkg-config libbpf-dev bpftool libelf-dev zlib1g-dev
      libnftnl-dev libmnl-dev libnetfilter-conntrack-dev libjson-c-dev
      libcurl4-openssl-dev libyaml-dev libmicrohttpd-dev libcriterion-dev
      iproute2 nftables conntrack iptables socat netsniff-ng python3
      python3-yaml openssl curl util-linux procps git time jq)
# Only for the tests, not for building kpx (so not in the Containerfile's
# build stage): clang's sanitizer and libFuzzer runtimes (make fuzz).
TEST_PKGS=(libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}" "${TEST_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]} (run as root to install)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
