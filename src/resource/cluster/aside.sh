#!/bin/sh
# Sets a cluster member's data aside, never deleting it (src/resource/cluster/etcd.rs,
# set_data_aside), run as
#   sh -c "$SCRIPT" cairn-aside DATA_DIR WAL_DIR WHY
# Moves everything inside DATA_DIR (and WAL_DIR, when it lies outside DATA_DIR) into
# DATA_DIR.WHY-STAMP beside it, keeping DATA_DIR itself (its owner, mode and the unit's
# ReadWritePaths stay valid). Prints the folder the data went to, or nothing when there was none.
set -eu
data=$1 wal=$2 why=$3
stamp=$(date -u +%Y%m%dT%H%M%SZ)
kept="$data.$why-$stamp"
moved=''
if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
  mkdir -p "$kept"
  for entry in "$data"/* "$data"/.[!.]*; do
    [ -e "$entry" ] || continue
    mv "$entry" "$kept/"
  done
  moved=1
fi
case $wal in
  "$data"/*) ;;
  *)
    if [ -d "$wal" ] && [ -n "$(ls -A "$wal")" ]; then
      mkdir -p "$kept/wal-dir"
      for entry in "$wal"/*; do
        [ -e "$entry" ] || continue
        mv "$entry" "$kept/wal-dir/"
      done
      moved=1
    fi
    ;;
esac
chmod 0700 "$kept" 2>/dev/null || true
if [ -n "$moved" ]; then printf '%s\n' "$kept"; fi
