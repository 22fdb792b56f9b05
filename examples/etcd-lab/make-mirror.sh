#!/usr/bin/env bash
# Builds a local mirror of an etcd release from Debian's etcd-server and etcd-client packages,
# shaped like the upstream release (etcd-vX-linux-amd64.tar.gz with etcd and etcdctl under one
# top folder), so the spec's real download-verify-extract path runs without reaching GitHub.
# Writes mirror/vX/etcd-vX-linux-amd64.tar.gz (the release download layout) and mirror.toml ([vars] with version, sha256 and a
# file:// url) beside this script. The tarball is reproducible: same packages, same sha256.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download etcd-server etcd-client >/dev/null 2>&1 || {
  apt-get update -qq && apt-get download etcd-server etcd-client >/dev/null
}
for deb in etcd-server_*.deb etcd-client_*.deb; do dpkg-deb -x "$deb" root; done
version=$(dpkg-deb -f etcd-server_*.deb Version | sed 's/-.*//')
top="etcd-v${version}-linux-amd64"
mkdir "$top"
cp root/usr/bin/etcd root/usr/bin/etcdctl "$top/"
mkdir -p "$here/mirror/v${version}"
tarball="$here/mirror/v${version}/${top}.tar.gz"
# Written beside the destination and renamed into place: a reader (cairn, or a second run of this
# script at the same time) never sees half a file, and both runs produce the same bytes.
tar --sort=name --mtime='2020-01-01 00:00Z' --owner=0 --group=0 --numeric-owner -cf - "$top" | gzip -n -9 > "$tarball.tmp.$$"
mv -f "$tarball.tmp.$$" "$tarball"
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
cat > "$here/mirror.toml.tmp.$$" <<TOML
# Written by make-mirror.sh: a local etcd release repacked from Debian's packages.
[vars]
etcd_version = "${version}"
etcd_sha256 = "${sha}"
etcd_mirror = "file://${here}/mirror"
TOML
mv -f "$here/mirror.toml.tmp.$$" "$here/mirror.toml"
echo "mirror: $tarball ($sha)"
