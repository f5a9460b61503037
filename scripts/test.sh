#!/usr/bin/env bash
# scripts/test.sh — runs every natkit test: unit tests, fuzz seeds, and, as
# root, the NAT-lab (network namespaces + nftables) and interop tests against
# real third-party peers. As root it installs its Debian prerequisites and sets
# NATKIT_E2E=1, so a missing prerequisite fails instead of skipping.
#
#   scripts/test.sh            # everything
#   scripts/test.sh ./pkg/stun # some packages only
#
# SIPp (sip-tester) is the real SIP peer of the `natkit call` interop test.
# Environment: NATKIT_FUZZTIME=10s also runs every fuzz target for that long.
# NATKIT_DEBIAN_MIRROR: the mirror packaging's TestSystemdUnit debootstraps
# Debian 12 from (default http://deb.debian.org/debian; the root file system
# is cached in ~/.cache/natkit-test, so once a machine).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(./...)

# Debian packages the lab and interop tests need: command → package.
declare -A need=(
  [ip]=iproute2 [nft]=nftables [tc]=iproute2
  [turnserver]=coturn [turnutils_natdiscovery]=coturn [turnutils_stunclient]=coturn
  [stun]=stun-client [stund]=stun-server
  [sipp]=sip-tester [kamailio]=kamailio [baresip]=baresip-core [sox]=sox
  # packaging's TestSystemdUnit: a Debian root file system booted with
  # systemd as PID 1 (systemd-nspawn), the deb installed there.
  [debootstrap]=debootstrap [systemd-nspawn]=systemd-container
  [unshare]=util-linux [nsenter]=util-linux [dpkg-deb]=dpkg
)

if [ "$(id -u)" = 0 ]; then
  missing=()
  for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    echo "== installing Debian packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    # Installing coturn would start its system service (a turnserver on
    # 3478). Tests never stop what they did not start, so nothing is started:
    # a policy-rc.d that forbids starting services, for this install only,
    # and only when the machine has none of its own.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n# natkit scripts/test.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
      chmod 755 "$policy"
      own_policy=1
      trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
    if [ -n "$own_policy" ]; then rm -f "$policy"; own_policy=; fi
  fi
  # Nothing here stops, kills or reconfigures a process or service that this
  # script did not start: the tests bind their own free ports (never the
  # host's 3478) and run third-party servers as their own child processes.
  export PATH="$PATH:/usr/sbin:/sbin"
  export NATKIT_E2E=1
  echo "== root: NAT-lab and interop tests enabled (NATKIT_E2E=1)"
else
  echo "== not root: NAT-lab and interop tests will skip (run as root to include them)"
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  printf 'gofmt: these files are not formatted:\n%s\n' "$unformatted"
  exit 1
fi

echo "== go vet"
go vet "${packages[@]}"

echo "== cross-build (linux, darwin, windows)"
for os in linux darwin windows; do
  GOOS=$os GOARCH=amd64 go build -o /dev/null ./cmd/natkit
done

if command -v goreleaser >/dev/null 2>&1; then
  echo "== goreleaser check"
  goreleaser check
else
  echo "== goreleaser not installed: .goreleaser.yaml not checked (go install github.com/goreleaser/goreleaser/v2@v2.16.0)"
fi

echo "== go test"
go test -count=1 -timeout 30m "${packages[@]}"

if [ -n "${NATKIT_FUZZTIME:-}" ]; then
  echo "== fuzz ($NATKIT_FUZZTIME each)"
  for pkg in $(go list "${packages[@]}"); do
    dir=$(go list -f '{{.Dir}}' "$pkg")
    for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$NATKIT_FUZZTIME" "$pkg"
    done
  done
fi
