#!/usr/bin/env bash
# iommuctl's bash completion (clients/iommuctl/iommuctl.bash): sourced into bash, completing
# subcommands, global options, a subcommand's options and option values from iommuctl's own help.
# Usage: iommuctl_completion_test.sh IOMMUCTL_BINARY COMPLETION_SCRIPT
set -euo pipefail
iommuctl="$1"
script="$2"
fail() { echo "FAIL: $*" >&2; exit 1; }

# shellcheck source=/dev/null
source "$script"
complete -p iommuctl | grep -q -- "-F _iommuctl" || fail "no completion registered for iommuctl"

# complete WORD...: COMPREPLY for the command line WORD... (the last word is being completed).
complete_line() {
  COMP_WORDS=("$iommuctl" "$@")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMPREPLY=()
  _iommuctl
  printf '%s\n' "${COMPREPLY[@]}"
}
has() {  # has WORD LINES
  grep -qx -- "$1" <<<"$2" || fail "completion lacks '$1'; got: $(echo $2)"
}

got="$(complete_line "")"
for sub in units groups map unmap health claim keep-lease hand-over watch help; do has "$sub" "$got"; done
got="$(complete_line "hand")"
[ "$got" = "hand-over" ] || fail "'hand' completes to: $got"
got="$(complete_line release-ownership 1 "--")"
has "--force" "$got"
got="$(complete_line "ma")"
[ "$(sort <<<"$got")" = "map
map-region
mappings" ] || fail "'ma' completes to: $got"
got="$(complete_line "--ta")"
[ "$got" = "--target" ] || fail "'--ta' completes to: $got"
got="$(complete_line --target unix:/x.sock --json "heal")"
[ "$got" = "health" ] || fail "after global options, 'heal' completes to: $got"
got="$(complete_line map 1 "--")"
has "--prot" "$got"
has "--help" "$got"
got="$(complete_line map 1 0x1000 0x2000 4K --prot "")"
has "rw" "$got"
got="$(complete_line alloc smmu0 --type "UN")"
[ "$got" = "UNMANAGED" ] || fail "'--type UN' completes to: $got"
got="$(complete_line help "keep")"
[ "$got" = "keep-lease" ] || fail "'help keep' completes to: $got"
got="$(complete_line -o "w")"
[ "$got" = "wide" ] || fail "'-o w' completes to: $got"
got="$(complete_line --output "")"
has "json" "$got"; has "table" "$got"
got="$(complete_line -o wide "grou")"
[ "$(sort <<<"$got")" = "group
groups" ] || fail "after -o wide, 'grou' completes to: $got"
got="$(complete_line -ojson "heal")"
[ "$got" = "health" ] || fail "after -ojson, 'heal' completes to: $got"
echo PASS
