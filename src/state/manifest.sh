#!/bin/sh
# Writes a host manifest, run by cairn (src/state/host.rs, write_manifest) as
#   sh -c "$SCRIPT" cairn-manifest PATH < manifest-json
# Replaces the manifest $1 with stdin atomically (0600 in a 0700 directory), or deletes it when
# stdin is empty (the spec manages nothing there any more). Prints nothing.
set -eu
umask 077
mkdir -p /var/lib/cairn/manifests
chmod 0700 /var/lib/cairn /var/lib/cairn/manifests
tmp=$(mktemp /var/lib/cairn/manifests/.tmp.XXXXXXXXXX)
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if [ -s "$tmp" ]; then
  sync -- "$tmp"
  mv -f -- "$tmp" "$1"
  trap - EXIT
else
  rm -f -- "$1"
fi
