#!/bin/sh
# The host probe, run once per host by cairn (src/resource/probe.rs, ProbeRequest::invocation) as
#   sh -c "$SCRIPT" cairn-probe UNIT_PROPS [REQUEST]
# $1: the `systemctl show -p` property list (super::unit::SHOW_PROPERTIES).
# $2: the request, when it is small enough to be an argument (it names paths, units and users,
# never a secret); a larger request comes on stdin instead, where a cut-off last line is dropped.
#
# The request is `TAG<TAB>value` lines (P path, UNIT, USER, GROUP, C certificate,
# K private key, V version command, Q query command, FW firewall, M manifest directory), then prints `C` lines with
# the text of each requested certificate (read with shell builtins, at most 500 lines each), `K`
# lines with the public key of each requested private key file (`openssl pkey -pubout`: one
# openssl per key, as openssl derives one key per process; the private key itself never leaves
# the host and key files are stat'ed but never hashed), `S` lines from one `stat` over every
# existing path and `H` lines from one `sha256sum` over the regular files among them, then
# `E end` so a cut-off output is detected. Missing paths print nothing. `[`, `printf` and
# parameter expansion are shell builtins, and each list becomes the arguments of one process (no
# xargs, no pipes), so apart from key checks and version commands the whole probe forks four
# processes (stat, sha256sum, systemctl, cat for the manifest) or so, whatever the number of
# paths. Lists are walked with `for` over words split on newlines (globbing off), not with
# `read`: dash's `read` makes one system call per byte, which was most of the probe's own cost.
# Each requested version command (`V` lines:
# an argv joined by the unit separator, split back into words with globbing off, never
# evaluated) runs under `timeout 10` and prints `V<TAB>argv<TAB>first line` when it succeeds: a
# few forks per version command, none when no binary asks for one.
# Each query command (`Q` lines, split like version commands) runs under `timeout 15` and prints
# `Q<TAB>argv<TAB>status<TAB>stdout` with the stdout's newlines as unit separators.
# Also prints UN/US/UX (systemd units), PW/GR (getent), FWSSH/FWNFT (firewall) and M (manifest
# lines); parse_probe_bytes in probe.rs reads them all.
# `D` lines (SHA256<TAB>path) name text files shown as diffs: after `E end` comes one tar
# archive (one `tar` process, `-P`: absolute names) of those among the hashed files whose sha256
# is not the one given, so the plan needs no second read for its diffs.
# An `L` line (a lock holder record, one line of JSON) takes the apply lock first (the one place
# cairn takes it: an apply's plan, and its retries in host order): the record goes to a temp file hard-linked to the lock path (`ln` fails if it exists,
# atomically). It prints `L acquired` and goes on, or `L held` with the holder's record and stops
# there (nothing else is read under another run's lock). A request cut off mid-line on stdin has
# no complete `L` line: it is dropped, and no lock is taken.
set -u
unit_props=$1
paths='' certs='' keys='' fw='' versions='' queries='' manifests='' diffs='' lock=''
units='' users='' groups=''
nl='
'
tab='	'
ifs=$IFS
if [ $# -ge 2 ]; then
  request=$2
else
  # The dot keeps the trailing newlines that `$(...)` strips, so a cut-off last line shows.
  request=$(cat && printf .)
  request=${request%.}
  case $request in
    *"$nl") ;;
    *"$nl"*) request=${request%"$nl"*}$nl ;;
    *) request='' ;;
  esac
fi
# From here on lists split on newlines only and are never globbed; the manifests' glob and the
# firewall's word splitting below restore the defaults where they need them.
IFS=$nl
set -f
for line in $request; do
  value=${line#*"$tab"}
  case ${line%%"$tab"*} in
    P) paths="$paths$value$nl" ;;
    UNIT) units="$units$value$nl" ;;
    USER) users="$users$value$nl" ;;
    GROUP) groups="$groups$value$nl" ;;
    C) certs="$certs$value$nl" ;;
    K) keys="$keys$value$nl" ;;
    V) versions="$versions$value$nl" ;;
    Q) queries="$queries$value$nl" ;;
    FW) fw=1 ;;
    M) manifests=$value ;;
    D) diffs="$diffs$value$nl" ;;
    L) lock=$value ;;
  esac
done
if [ -n "$lock" ]; then
  umask 077
  if [ ! -d /var/lib/cairn ]; then mkdir -p /var/lib/cairn && chmod 0700 /var/lib/cairn; fi
  tmp=/var/lib/cairn/.lock.$$
  rm -f -- "$tmp"
  # A dead connection closes our output (SIGPIPE) or hangs up: the temp file still goes.
  trap 'rm -f -- "$tmp"' EXIT
  trap '' PIPE
  trap 'exit 1' HUP INT TERM
  if (set -C && printf '%s\n' "$lock" > "$tmp") 2> /dev/null && ln -- "$tmp" /var/lib/cairn/lock 2> /dev/null; then
    rm -f -- "$tmp"
    trap - EXIT
    echo 'L	acquired'
  else
    rm -f -- "$tmp"
    trap - EXIT
    held=''
    if [ -r /var/lib/cairn/lock ]; then IFS= read -r held < /var/lib/cairn/lock || :; fi
    printf 'L\theld\t%s\n' "$held"
    echo 'E	end'
    exit 0
  fi
fi
existing='' files=''
for p in $paths; do
  if [ -e "$p" ] || [ -L "$p" ]; then
    existing="$existing$p$nl"
    if [ -f "$p" ] && [ ! -L "$p" ] && [ -r "$p" ]; then files="$files$p$nl"; fi
  fi
done
for p in $certs; do
  if [ -f "$p" ] && [ -r "$p" ]; then
    n=0
    while IFS= read -r l || [ -n "$l" ]; do
      n=$((n + 1)); [ "$n" -gt 500 ] && break
      printf 'C\t%s\t%s\n' "$l" "$p"
    done < "$p"
  fi
done
if command -v openssl >/dev/null 2>&1; then have_openssl=1; else have_openssl=''; fi
for p in $keys; do
  if [ -e "$p" ] || [ -L "$p" ]; then
    existing="$existing$p$nl"
    if [ -z "$have_openssl" ]; then printf 'K\t!noopenssl\t%s\n' "$p"; continue; fi
    if pub=$(openssl pkey -in "$p" -passin pass: -pubout 2>/dev/null); then
      for l in $pub; do printf 'K\t%s\t%s\n' "$l" "$p"; done
    else
      printf 'K\t!unreadable\t%s\n' "$p"
    fi
  fi
done
# Prints each non-empty line of $2 with the tag $1 before it. Builtins: no fork, no read.
tagged() {
  for l in $2; do printf '%s\t%s\n' "$1" "$l"; done
}
# The same, empty lines too (they part systemctl's units): `read` from a here-document, one
# system call per byte, so only for systemctl's short output.
tagged_with_empty() {
  [ -n "$2" ] || return 0
  while IFS= read -r l; do
    printf '%s\t%s\n' "$1" "$l"
  done <<CAIRN_LINES
$2
CAIRN_LINES
}
# The lists hold one path or name per line and become arguments (split on newlines, never
# globbed, as set above) of a subshell that execs the command: one process each, no xargs, no
# pipes.
if [ -n "$existing" ]; then
  # shellcheck disable=SC2086 # one path per line
  (exec stat -c 'S	%F	%a	%U	%G	%s	%Y	%n' -- $existing)
fi
sums=''
# shellcheck disable=SC2086 # one path per line
if [ -n "$files" ]; then sums=$(exec sha256sum -- $files); fi
tagged H "$sums"
# The diffs' files: regular, readable, and not already what cairn would write.
old=''
for d in $diffs; do
  sum=${d%%"$tab"*} p=${d#*"$tab"}
  case $nl$files in *"$nl$p$nl"*) ;; *) continue ;; esac
  case $nl$sums$nl in *"$nl$sum  $p$nl"*) continue ;; esac
  old="$old$p$nl"
done
if [ -n "$units" ]; then
  tagged UN "$units"
  # shellcheck disable=SC2086 # one unit per line
  if show=$(exec systemctl show --timestamp=unix -p "$unit_props" -- $units 2>/dev/null) ||
    show=$(TZ=UTC && export TZ && exec systemctl show -p "$unit_props" -- $units 2>&1); then
    tagged_with_empty US "$show"
  else
    printf 'UX\t%s\n' "$(printf '%s' "$show" | tr '\n' ' ')"
  fi
fi
# shellcheck disable=SC2086 # one name per line
if [ -n "$users" ]; then tagged PW "$(IFS=$nl && set -f && exec getent passwd $users)"; fi
# shellcheck disable=SC2086 # one name per line
if [ -n "$groups" ]; then tagged GR "$(IFS=$nl && set -f && exec getent group $groups)"; fi
if [ -n "$versions$queries" ]; then us=$(printf '\037'); fi
for v in $versions; do
  # Splitting $v on the unit separator (globbing off, in the subshell) is the point: it is an argv.
  # shellcheck disable=SC2086
  if out=$(IFS=$us; set -f; set -- $v; timeout 10 "$@" </dev/null 2>&1); then
    printf 'V\t%s\t%s\n' "$v" "${out%%"$nl"*}"
  fi
done
for v in $queries; do
  # An argv like a version command's; its whole stdout comes back on one line, newlines as the
  # unit separator, with the exit status (stderr is dropped: it may be noisy, never needed).
  # shellcheck disable=SC2086
  out=$(IFS=$us; set -f; set -- $v; timeout 15 "$@" </dev/null 2>/dev/null)
  rc=$?
  printf 'Q\t%s\t%s\t%s\n' "$v" "$rc" "$(printf '%s' "$out" | tr '\n' "$us")"
done
if [ -n "$fw" ]; then
  IFS=$ifs
  # cairn's SSH session: from the environment, or (behind sudo, which resets it) from the
  # nearest ancestor process that has it.
  conn=${SSH_CONNECTION:-} pid=$PPID n=0
  while [ -z "$conn" ] && [ "$n" -lt 8 ] && [ "$pid" -gt 1 ]; do
    conn=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | sed -n 's/^SSH_CONNECTION=//p')
    read -r stat < "/proc/$pid/stat" || break
    stat=${stat##*) }
    # Fields 3.. of /proc/PID/stat (state letter, numbers: nothing a glob matches) into $1..;
    # $2 is the parent pid.
    # shellcheck disable=SC2086
    set -- $stat
    pid=$2 n=$((n + 1))
  done
  printf 'FWSSH\t%s\n' "$conn"
  if command -v nft >/dev/null 2>&1; then
    if out=$(nft -j list table inet cairn 2>&1); then
      printf 'FWNFT\tjson\t%s\n' "$(printf '%s' "$out" | tr -d '\n')"
    else
      printf 'FWNFT\terror\t%s\n' "$(printf '%s' "$out" | tr '\n' ' ')"
    fi
  else
    printf 'FWNFT\tno-nft\n'
  fi
  IFS=$nl
fi
if [ -n "$manifests" ]; then
  # One `cat` per manifest (JSON: its empty lines mean nothing), not a `read` per byte.
  set +f
  for f in "$manifests"/*.json; do
    [ -f "$f" ] || continue
    text=$(cat -- "$f") || continue
    for l in $text; do printf 'M\t%s\t%s\n' "$f" "$l"; done
  done
  set -f
fi
echo 'E	end'
if [ -n "$old" ] && command -v tar > /dev/null 2>&1; then
  # shellcheck disable=SC2086 # one path per line
  tar -c -b 1 -P -f - -- $old 2> /dev/null || :
fi
exit 0
