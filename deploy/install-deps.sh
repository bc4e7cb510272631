#!/usr/bin/env bash
# Installs the Debian 12 packages listed in deploy/debian-packages.txt (build and test) and
# deploy/debian-packages-runtime.txt (run time) (idempotent: does nothing when they are all
# present). Needs root or sudo.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mapfile -t packages < <(cat "$here/debian-packages.txt" "$here/debian-packages-runtime.txt" |
                        grep -v '^\s*#' | grep -v '^\s*$' | sort -u)
# Installed packages and the virtual names they provide (libspdlog1.10 provides libspdlog1.10-fmt9,
# the name the runtime list has because dpkg-shlibdeps writes it in the package's Depends).
installed="$(dpkg-query -W -f='${Status}\t${Package} ${Provides}\n' 2>/dev/null |
             grep '^install ok installed' | cut -f2 | sed 's/([^)]*)//g; s/,/ /g' | tr -s ' ' '\n')"
missing=()
for p in "${packages[@]}"; do
  grep -qx -- "$p" <<<"$installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
