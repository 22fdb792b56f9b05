#!/bin/sh
# Batched atomic file writes, run by cairn (src/transport/ops.rs, write_files_atomic) as
#   sh -c "$SCRIPT" cairn-write-batch DEST MODE OWNER GROUP [DEST MODE OWNER GROUP]... < records
# stdin holds one record per destination, in order: its size in bytes on a line, then exactly
# that many bytes. Each file goes into a temp file beside its destination (created 0600 by
# mktemp, so nothing else can read it meanwhile), gets its owner and group ($3:$4, when either is
# non-empty) and mode ($2, octal, when non-empty). Then one `sync` flushes every temp file, each
# is renamed over its destination, and one more `sync` flushes every directory touched: two
# fsync passes for the whole batch, where write.sh costs two `sync` processes per file. A file
# that fails is left as it was and the others go on. Prints one line per destination, in order:
# `ok`, or `fail` and what went wrong. Exits non-zero only when stdin ended early.
# Paths never hold a newline or a tab (cairn refuses such paths), so lists are newline-separated.
set -u
nl='
'
tab=$(printf '\t')
# One entry per destination: TMP<TAB>DEST, or !MESSAGE for one that already failed.
entries=
# Temp files not yet renamed, removed if the script stops half-way.
pending=
trap 'if [ -n "$pending" ]; then IFS=$nl; set -f; rm -f -- $pending; fi' EXIT
add() { entries="$entries$1$nl"; }
flat() { printf '%s' "$1" | tr '\n\t' '  '; }
while [ $# -ge 4 ]; do
  dest=$1 mode=$2 owner=$3 group=$4
  shift 4
  if ! IFS= read -r size; then
    echo "cairn-write-batch: input ended early" >&2
    exit 1
  fi
  case $size in
    '' | *[!0-9]*) echo "cairn-write-batch: bad size line" >&2; exit 1 ;;
  esac
  dir=$(dirname -- "$dest")
  if ! tmp=$(mktemp -- "$dir/.cairn-tmp.XXXXXXXXXX" 2>&1); then
    head -c "$size" > /dev/null
    add "!$(flat "$tmp")"
    continue
  fi
  pending="$pending$tmp$nl"
  # GNU head reads no more than it was asked for, so the next record stays on stdin.
  if ! head -c "$size" > "$tmp"; then
    echo "cairn-write-batch: cannot write $tmp" >&2
    exit 1
  fi
  if [ "$(wc -c < "$tmp")" -ne "$size" ]; then
    echo "cairn-write-batch: input ended early" >&2
    exit 1
  fi
  if [ -n "$owner$group" ] && ! err=$(chown -- "$owner:$group" "$tmp" 2>&1); then
    rm -f -- "$tmp"
    add "!$(flat "$err")"
    continue
  fi
  if [ -n "$mode" ] && ! err=$(chmod -- "$mode" "$tmp" 2>&1); then
    rm -f -- "$tmp"
    add "!$(flat "$err")"
    continue
  fi
  add "$tmp$tab$dest"
done
written=$(printf '%s' "$entries" | grep -v '^!' | cut -f1)
if [ -n "$written" ]; then
  IFS=$nl
  set -f
  # shellcheck disable=SC2086 # one argument per line
  if ! sync -- $written; then
    echo "cairn-write-batch: sync failed" >&2
    exit 1
  fi
  unset IFS
  set +f
fi
dirs=
IFS=$nl
set -f
for entry in $entries; do
  case $entry in
    !*) printf 'fail %s\n' "${entry#!}"; continue ;;
  esac
  tmp=${entry%%"$tab"*} dest=${entry#*"$tab"}
  if err=$(mv -f -- "$tmp" "$dest" 2>&1); then
    printf 'ok\n'
    dirs="$dirs$(dirname -- "$dest")$nl"
  else
    rm -f -- "$tmp"
    printf 'fail %s\n' "$(flat "$err")"
  fi
done
pending=
if [ -n "$dirs" ]; then
  dirs=$(printf '%s' "$dirs" | sort -u)
  # shellcheck disable=SC2086 # one argument per line
  sync -- $dirs 2>/dev/null || true
fi
