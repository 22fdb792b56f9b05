#!/bin/sh
# Takes the apply lock, run by cairn (src/state/host.rs, try_lock) as
#   sh -c "$SCRIPT" cairn-lock < holder-record
# Takes the lock when it is free: the holder record (JSON, on stdin) is written to a temp file
# and hard-linked to the lock path (`ln` fails if it exists, atomically). Prints `ACQUIRED`, or
# `HELD` and the current holder's record.
set -eu
umask 077
mkdir -p /var/lib/cairn
chmod 0700 /var/lib/cairn
tmp=$(mktemp /var/lib/cairn/.lock.XXXXXXXXXX)
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if ln -- "$tmp" /var/lib/cairn/lock 2>/dev/null; then
  echo ACQUIRED
else
  echo HELD
  cat /var/lib/cairn/lock 2>/dev/null || true
fi
