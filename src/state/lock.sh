#!/bin/sh
# Takes the apply lock, run by cairn (src/state/host.rs, try_lock) as
#   sh -c "$SCRIPT" cairn-lock SIZE < holder-record
# Takes the lock when it is free: the holder record (JSON of SIZE bytes, on stdin) is written to a
# temp file and hard-linked to the lock path (`ln` fails if it exists, atomically). Prints
# `ACQUIRED`, or `HELD` and the current holder's record. A record cut short (cairn killed while
# sending it) takes no lock.
set -eu
umask 077
size=$1
mkdir -p /var/lib/cairn
chmod 0700 /var/lib/cairn
tmp=$(mktemp /var/lib/cairn/.lock.XXXXXXXXXX)
trap 'rm -f -- "$tmp"' EXIT
# A dead connection closes our output (SIGPIPE) or hangs up: the cleanup above must still run.
trap '' PIPE
trap 'exit 1' HUP INT TERM
cat > "$tmp"
got=$(wc -c < "$tmp")
if [ "$got" -ne "$size" ]; then
  echo "input ended after $got of $size bytes; no lock taken" >&2
  exit 1
fi
if ln -- "$tmp" /var/lib/cairn/lock 2>/dev/null; then
  echo ACQUIRED
else
  echo HELD
  cat /var/lib/cairn/lock 2>/dev/null || true
fi
