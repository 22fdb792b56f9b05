#!/bin/sh
# Takes a verified snapshot of an etcd cluster through one member (src/resource/cluster/etcd.rs,
# snapshot), run as
#   sh -c "$SCRIPT" cairn-snapshot DIR NAME ETCDUTL ETCDCTL-ARGV...
# ETCDCTL-ARGV is etcdctl with its endpoint and TLS flags; `snapshot save` is appended. The
# snapshot is written beside its destination, checked with `snapshot status` (etcdutl when the
# release has it: etcd 3.6 removed the command from etcdctl), made 0600, flushed to disk and
# renamed into place, so DIR never holds a partial or unchecked file. Prints three lines: the
# path, its sha256, its size in bytes; then the status (JSON) on the following lines.
set -eu
dir=$1 name=$2 etcdutl=$3
shift 3
umask 077
mkdir -p "$dir"
part="$dir/.$name.part"
trap 'rm -f "$part"' EXIT
if ! "$@" snapshot save "$part" >/dev/null 2>"$part.err"; then
  cat "$part.err" >&2
  rm -f "$part.err"
  exit 1
fi
rm -f "$part.err"
if [ -x "$etcdutl" ]; then
  status=$("$etcdutl" snapshot status "$part" -w json)
else
  status=$("$@" snapshot status "$part" -w json)
fi
chmod 0600 "$part"
sync "$part"
mv "$part" "$dir/$name"
sync "$dir"
sum=$(sha256sum "$dir/$name" | cut -d' ' -f1)
size=$(wc -c <"$dir/$name" | tr -d ' ')
printf '%s\n%s\n%s\n%s\n' "$dir/$name" "$sum" "$size" "$status"
