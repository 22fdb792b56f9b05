#!/bin/sh
# Atomic file write, run by cairn (src/transport/ops.rs, write_file_atomic) as
#   sh -c "$SCRIPT" cairn-write DEST MODE OWNER GROUP SIZE < content
# Writes stdin into a temp file beside $1 (created 0600 by mktemp, so nothing else can read it
# meanwhile), checks that exactly SIZE ($5) bytes arrived (stdin also ends early when cairn or its
# connection dies mid-stream: a short file must never be renamed into place), sets owner and
# group ($3:$4, when either is non-empty) and mode ($2, octal, when non-empty), fsyncs it, renames
# it over the destination, then fsyncs the directory. Any failure removes the temp file and leaves
# the destination as it was. Prints nothing but errors.
set -eu
dest=$1 mode=$2 owner=$3 group=$4 size=$5
dir=$(dirname -- "$dest")
tmp=$(mktemp -- "$dir/.cairn-tmp.XXXXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
# A dead connection closes our output (SIGPIPE) or hangs up: the cleanup above must still run.
trap '' PIPE
trap 'exit 1' HUP INT TERM
cat > "$tmp"
got=$(wc -c < "$tmp")
if [ "$got" -ne "$size" ]; then
  echo "input ended after $got of $size bytes; $dest left as it was" >&2
  exit 1
fi
if [ -n "$owner$group" ]; then chown -- "$owner:$group" "$tmp"; fi
if [ -n "$mode" ]; then chmod -- "$mode" "$tmp"; fi
sync -- "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
sync -- "$dir" 2>/dev/null || true
