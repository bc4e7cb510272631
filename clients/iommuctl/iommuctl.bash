# bash completion for iommuctl. Installed by `cmake --install` (and the Debian package) as
# share/bash-completion/completions/iommuctl; or source it. The subcommands and their options are
# read from iommuctl's own help (`iommuctl help`, `iommuctl COMMAND --help`), so they never drift.

_iommuctl_global_options="--target --owner --timeout --output --json --tls-ca --tls-cert --tls-key
  --tls-server-name --request-id --retries --help --version"

_iommuctl() {
  local cur prev cmd i word
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev=""
  [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
  local ctl="${COMP_WORDS[0]}"
  COMPREPLY=()

  # The subcommand: the first word that is neither a global option nor its value.
  cmd=""
  i=1
  while [ "$i" -lt "$COMP_CWORD" ]; do
    word="${COMP_WORDS[i]}"
    case "$word" in
      --json|--help|-h|--version|-o?*) ;;
      -o) i=$((i + 1)) ;;  # its format follows
      --*=*) ;;
      --*) i=$((i + 1)) ;;  # a global option's value follows
      *) cmd="$word"; break ;;
    esac
    i=$((i + 1))
  done

  case "$prev" in
    -o|--output)
      COMPREPLY=($(compgen -W "json table wide" -- "$cur")); return 0 ;;
    --tls-ca|--tls-cert|--tls-key)
      COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --prot|--access)
      COMPREPLY=($(compgen -W "r w rw" -- "$cur")); return 0 ;;
    --type|--default-type)
      COMPREPLY=($(compgen -W "BLOCKED IDENTITY UNMANAGED DMA DMA_FQ" -- "$cur")); return 0 ;;
  esac

  if [ -z "$cmd" ]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "$_iommuctl_global_options" -- "$cur"))
    else
      local commands
      commands="$("$ctl" help 2>/dev/null | awk '/^  [a-z]/ {print $1}')"
      COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    fi
    return 0
  fi
  if [ "$cmd" = "help" ]; then
    COMPREPLY=($(compgen -W "$("$ctl" help 2>/dev/null | awk '/^  [a-z]/ {print $1}')" -- "$cur"))
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    local options
    options="$("$ctl" "$cmd" --help 2>/dev/null | sed -n 's/^options: //p')"
    COMPREPLY=($(compgen -W "$options --help --json --output" -- "$cur"))
  fi
  return 0
}
complete -F _iommuctl iommuctl
