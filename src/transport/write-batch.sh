#!/bin/sh
# Batched atomic file writes, run by cairn (src/transport/ops.rs, write_files_atomic) as
#   sh -c "$SCRIPT" cairn-write-batch DEST MODE OWNER GROUP [DEST MODE OWNER GROUP]... < records
# stdin holds one record per destination, in order: its size in bytes on a line, then exactly
# that many bytes; then a line `end`, so a cut-off input is detected before anything is renamed.
# Each file goes into a temp file beside its destination (created 0600 and only if absent, so
# nothing else can read it meanwhile), gets its owner and group ($3:$4, when either is non-empty)
# and mode ($2, octal, when non-empty). Then one `sync` flushes every temp file, each is renamed
# over its destination, in order, and one more `sync` flushes every directory touched: two fsync
# passes for the whole batch, where write.sh costs two `sync` processes per file. A file that
# fails is left as it was and the others go on. Prints one line per destination, in order: `ok`,
# or `fail` and what went wrong. Exits non-zero, renaming nothing, when the input is cut off.
# Forks two processes per file (head, mv) and a few per batch: chown and chmod run once per
# distinct owner and mode. Paths never hold a newline or a tab (cairn refuses such paths), so
# lists are newline-separated.
set -u
nl='
'
tab='	'
umask 077
# One entry per destination: TMP<TAB>DEST, or !MESSAGE for one that already failed.
entries=
# OWNER:GROUP<TAB>TMP and MODE<TAB>TMP, for the grouped chown and chmod.
owners='' modes=''
# TMP<TAB>REASON of the temp files whose chown or chmod failed.
failed=
# Temp files not yet renamed, removed if the script stops half-way.
pending=
trap 'if [ -n "$pending" ]; then IFS=$nl; set -f; rm -f -- $pending; fi' EXIT
# A dead connection closes our output (SIGPIPE) or hangs up: the cleanup above must still run
# (as in write.sh).
trap '' PIPE
trap 'exit 1' HUP INT TERM
cut_off() {
  echo "cairn-write-batch: $1" >&2
  exit 1
}
i=0
while [ $# -ge 4 ]; do
  dest=$1 mode=$2 owner=$3 group=$4
  shift 4
  i=$((i + 1))
  IFS= read -r size || cut_off "input ended early"
  case $size in
    '' | *[!0-9]*) cut_off "bad size line" ;;
  esac
  dir=${dest%/*}
  tmp="${dir:-}/.cairn-tmp.$$.$i"
  # noclobber: created only if absent (O_EXCL), without a mktemp process per file; a name taken
  # by a temp file that a killed run left behind falls back to mktemp.
  set -C
  if ! { true > "$tmp"; } 2> /dev/null && ! tmp=$(mktemp -- "${dir:-}/.cairn-tmp.XXXXXXXXXX" 2> /dev/null); then
    set +C
    head -c "$size" > /dev/null
    if [ -d "${dir:-/}" ]; then entries="$entries!cannot create a temp file in ${dir:-/}$nl"; else entries="$entries!no directory ${dir:-/}$nl"; fi
    continue
  fi
  set +C
  pending="$pending$tmp$nl"
  # GNU head reads no more than it was asked for, so the next record stays on stdin.
  head -c "$size" > "$tmp" || cut_off "cannot write $dest (left as it was)"
  entries="$entries$tmp$tab$dest$nl"
  if [ -n "$owner$group" ]; then owners="$owners$owner:$group$tab$tmp$nl"; fi
  if [ -n "$mode" ]; then modes="$modes$mode$tab$tmp$nl"; fi
done
IFS= read -r end || end=
[ "$end" = end ] || cut_off "input ended early"

# Runs "$1" (chown or chmod) once per distinct value of the list in $2, over its temp files.
apply_attr() {
  for value in $(printf '%s' "$2" | cut -f1 | sort -u); do
    files=$(printf '%s' "$2" | awk -F '\t' -v v="$value" '$1 == v { print $2 }')
    # shellcheck disable=SC2086 # one file per line
    if ! err=$("$1" -- "$value" $files 2>&1); then
      err=$(printf '%s' "$err" | tr '\n\t' '  ')
      for f in $files; do failed="$failed$f$tab$err$nl"; done
    fi
  done
}
IFS=$nl
set -f
apply_attr chown "$owners"
apply_attr chmod "$modes"
# Sets `why` to the reason temp file $1 failed, or to nothing (builtins only: no fork per file).
reason() {
  why=
  case $nl$failed in
    *"$nl$1$tab"*)
      why=${failed#*"$1$tab"}
      why=${why%%"$nl"*}
      ;;
  esac
}
written=
for entry in $entries; do
  case $entry in
    !*) continue ;;
  esac
  tmp=${entry%%"$tab"*}
  case $nl$failed in
    *"$nl$tmp$tab"*) ;;
    *) written="$written$tmp$nl" ;;
  esac
done
# shellcheck disable=SC2086 # one file per line
if [ -n "$written" ] && ! sync -- $written; then cut_off "sync failed"; fi
dirs=
for entry in $entries; do
  case $entry in
    !*)
      printf 'fail %s\n' "${entry#!}"
      continue
      ;;
  esac
  tmp=${entry%%"$tab"*} dest=${entry#*"$tab"}
  reason "$tmp"
  if [ -n "$why" ]; then
    rm -f -- "$tmp"
    printf 'fail %s\n' "$why"
  elif mv -f -- "$tmp" "$dest" 2> /dev/null; then
    printf 'ok\n'
    dir=${dest%/*}
    dirs="$dirs${dir:-/}$nl"
  else
    rm -f -- "$tmp"
    printf 'fail cannot rename %s to %s\n' "$tmp" "$dest"
  fi
done
pending=
if [ -n "$dirs" ]; then
  dirs=$(printf '%s' "$dirs" | sort -u)
  # shellcheck disable=SC2086 # one argument per line
  sync -- $dirs 2> /dev/null || true
fi
