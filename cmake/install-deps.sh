#!/bin/sh
# Install what libcolddiff needs to build and test, on Debian or Ubuntu.
# Only missing packages are installed; as non-root it uses sudo if present.
set -eu
# libopenmpi-dev and openmpi-bin build and test libcolddiff-mpi (optional:
# without MPI, CMake leaves it out).
pkgs="cmake make gcc g++ pkg-config libopenblas-dev check zlib1g-dev libpng-dev python3 curl ca-certificates binutils libopenmpi-dev openmpi-bin"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing:$missing; install them with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing$missing"
$sudo apt-get update -qq
# shellcheck disable=SC2086 # the list is meant to split into words
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
