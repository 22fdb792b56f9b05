#!/bin/sh
# Releases the apply lock, run by cairn (src/state/host.rs, unlock) as
#   sh -c "$SCRIPT" cairn-unlock ID
# Removes the lock if it is the one with id $1 (or any lock when $1 is empty: `cairn unlock`).
# Prints the removed lock's record, `NONE` when there is no lock, or `OTHER` when it is someone
# else's (left in place).
set -eu
[ -e /var/lib/cairn/lock ] || { echo NONE; exit 0; }
if [ -z "$1" ] || grep -qF -- "\"id\":\"$1\"" /var/lib/cairn/lock; then
  cat /var/lib/cairn/lock
  rm -f /var/lib/cairn/lock
else
  echo OTHER
fi
