#!/bin/sh
# Atomic file write, run by cairn (src/transport/ops.rs, write_file_atomic) as
#   sh -c "$SCRIPT" cairn-write DEST MODE OWNER GROUP < content
# Writes stdin into a temp file beside $1 (created 0600 by mktemp, so nothing else can read it
# meanwhile), sets owner and group ($3:$4, when either is non-empty) and mode ($2, octal, when
# non-empty), fsyncs it, renames it over the destination, then fsyncs the directory. Any failure
# removes the temp file and leaves the destination as it was. Prints nothing.
set -eu
dest=$1 mode=$2 owner=$3 group=$4
dir=$(dirname -- "$dest")
tmp=$(mktemp -- "$dir/.cairn-tmp.XXXXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if [ -n "$owner$group" ]; then chown -- "$owner:$group" "$tmp"; fi
if [ -n "$mode" ]; then chmod -- "$mode" "$tmp"; fi
sync -- "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
sync -- "$dir" 2>/dev/null || true
