#!/usr/bin/env bash
# Builds a local mirror of etcd releases from Debian's etcd-server and etcd-client packages,
# shaped like the upstream release (etcd-vX-linux-amd64.tar.gz with etcd, etcdctl and, when the
# package has it, etcdutl under one top folder), so the spec's real download-verify-extract path
# runs without reaching GitHub. amd64 only. Tarballs are reproducible: same packages, same sha256.
#
#   make-mirror.sh           the etcd of the machine's own apt sources (bookworm: 3.4.23);
#                            writes mirror.toml ([vars] etcd_version, etcd_sha256, etcd_mirror)
#   make-mirror.sh VERSION   one of the Debian releases below
#   make-mirror.sh all       all of them
#
#   3.4.23  bookworm    3.5.16  trixie    3.5.30  sid
#
# Writes mirror/vX/etcd-vX-linux-amd64.tar.gz (the release download layout) beside this script.
# mirror.toml is written by every build that comes from the machine's own apt sources (no
# argument, `all`, or the version of the machine's suite). mirror-versions.toml is written by every
# run and lists every tarball in mirror/: etcd_X_Y_Z_sha256 per version, and etcd_versions_mirror
# (the same file:// url as etcd_mirror, named apart so a spec can include both files).
#
# Another suite's packages are fetched with `apt-get download` from a temporary sources list and
# temporary package lists (never the machine's own), naming the Debian mirror that the machine's
# apt sources name for its own suite, checked against debian-archive-keyring (bookworm's verifies
# trixie and sid).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The Debian suite that carries each version (the releases of issue 12).
declare -A suite_of=([3.4.23]=bookworm [3.5.16]=trixie [3.5.30]=sid)
all_versions=(3.4.23 3.5.16 3.5.30)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

usage() {
  echo "usage: make-mirror.sh [VERSION | all]   (VERSION: ${all_versions[*]})"
}

die() {
  echo "make-mirror.sh: $*" >&2
  exit 1
}

# Downloads etcd-server and etcd-client from the machine's own apt sources into the current folder.
fetch_own() {
  apt-get download etcd-server etcd-client >/dev/null 2>&1 || {
    apt-get update -qq && apt-get download etcd-server etcd-client >/dev/null
  }
}

# The Debian mirror of the machine's own apt sources: the URI serving its own suite, as apt reads
# /etc/apt/sources.list and /etc/apt/sources.list.d/*.list, *.sources.
own_mirror() {
  local codename uri
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release"
  # shellcheck disable=SC2016 # $(REPO_URI) is apt's format field, not a shell expansion
  uri=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
    awk -v suite="$codename" '$2 == suite { print $1; exit }')
  [ -n "$uri" ] || die "no apt source for $codename in /etc/apt/sources.list or /etc/apt/sources.list.d/"
  echo "$uri"
}

# Downloads etcd-server and etcd-client of Debian suite $1 into the current folder, through a
# temporary sources list and package lists under $2; the machine's apt state is left alone.
fetch_suite() {
  local suite=$1 tmp=$2 uri
  [ -r "$keyring" ] || die "$keyring is missing: apt-get install debian-archive-keyring"
  uri=$(own_mirror)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  echo "deb [signed-by=$keyring] $uri $suite main" > "$tmp/sources.list"
  local opts=(
    -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
    -o Dir::Etc::Preferences=/nonexistent -o Dir::Etc::PreferencesParts=/nonexistent
    -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o APT::Sandbox::User=root
  )
  apt-get "${opts[@]}" update >"$tmp/update.log" 2>&1 || {
    cat "$tmp/update.log" >&2
    if grep -q NO_PUBKEY "$tmp/update.log"; then
      die "apt-get update of $suite failed: $keyring lacks $suite's key (a newer debian-archive-keyring has it)"
    fi
    die "apt-get update of $suite failed (see apt's messages above)"
  }
  apt-get "${opts[@]}" download etcd-server etcd-client >"$tmp/download.log" 2>&1 || {
    cat "$tmp/download.log" >&2
    die "apt-get download from $suite failed"
  }
}

# Repacks the etcd-server and etcd-client packages in the current folder as a release tarball in
# mirror/; prints "VERSION SHA256".
pack() {
  local deb version client top tarball sha
  for deb in etcd-server_*.deb etcd-client_*.deb; do dpkg-deb -x "$deb" root; done
  version=$(dpkg-deb -f etcd-server_*.deb Version | sed 's/^[0-9]*://; s/-.*//')
  client=$(dpkg-deb -f etcd-client_*.deb Version | sed 's/^[0-9]*://; s/-.*//')
  [ "$client" = "$version" ] || die "etcd-server is $version but etcd-client is $client"
  top="etcd-v${version}-linux-amd64"
  mkdir "$top"
  cp root/usr/bin/etcd root/usr/bin/etcdctl "$top/"
  # etcdutl (snapshot restore from 3.5 on) is in trixie's and sid's etcd-server, not in bookworm's.
  if [ -e root/usr/bin/etcdutl ]; then cp root/usr/bin/etcdutl "$top/"; fi
  mkdir -p "$here/mirror/v${version}"
  tarball="$here/mirror/v${version}/${top}.tar.gz"
  # Written beside the destination and renamed into place: a reader (cairn, or a second run of this
  # script at the same time) never sees half a file, and both runs produce the same bytes.
  tar --sort=name --mtime='2020-01-01 00:00Z' --owner=0 --group=0 --numeric-owner -cf - "$top" | gzip -n -9 > "$tarball.tmp.$$"
  mv -f "$tarball.tmp.$$" "$tarball"
  sha=$(sha256sum "$tarball" | cut -d' ' -f1)
  echo "$version $sha"
}

# Writes mirror.toml: the vars of one version.
write_mirror_toml() {
  local version=$1 sha=$2
  cat > "$here/mirror.toml.tmp.$$" <<TOML
# Written by make-mirror.sh: a local etcd release repacked from Debian's packages.
[vars]
etcd_version = "${version}"
etcd_sha256 = "${sha}"
etcd_mirror = "file://${here}/mirror"
TOML
  mv -f "$here/mirror.toml.tmp.$$" "$here/mirror.toml"
}

# Writes mirror-versions.toml from the tarballs in mirror/ (under a lock, so that of two runs at
# the same time the last one lists what both built). $1...: "VERSION SHA256" already known.
write_versions_toml() {
  local known=("$@") tarball version sha line
  (
    flock 9
    {
      echo "# Written by make-mirror.sh: every etcd release in mirror/, repacked from Debian's packages."
      echo "[vars]"
      echo "etcd_versions_mirror = \"file://${here}/mirror\""
      for tarball in "$here"/mirror/v*/etcd-v*-linux-amd64.tar.gz; do
        [ -e "$tarball" ] || continue
        version=${tarball##*/etcd-v}
        version=${version%-linux-amd64.tar.gz}
        sha=
        for line in "${known[@]}"; do
          if [ "${line% *}" = "$version" ]; then sha=${line#* }; fi
        done
        [ -n "$sha" ] || sha=$(sha256sum "$tarball" | cut -d' ' -f1)
        echo "etcd_${version//./_}_sha256 = \"${sha}\""
      done | sort -V
    } > "$here/mirror-versions.toml.tmp.$$"
    mv -f "$here/mirror-versions.toml.tmp.$$" "$here/mirror-versions.toml"
  ) 9>"$here/mirror/.versions.lock"
}

[ $# -le 1 ] || { usage >&2; exit 2; }
case ${1-} in
  '') versions=(own) ;;
  all) versions=("${all_versions[@]}") ;;
  -h | --help) usage; exit 0 ;;
  *)
    [ -n "${suite_of[$1]+set}" ] || { echo "make-mirror.sh: no Debian release of etcd $1 is known here" >&2; usage >&2; exit 2; }
    versions=("$1")
    ;;
esac

# shellcheck source=/dev/null
own_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
built=()
for want in "${versions[@]}"; do
  dir="$work/$want"
  mkdir "$dir"
  if [ "$want" = own ] || [ "${suite_of[$want]}" = "$own_suite" ]; then
    (cd "$dir" && fetch_own)
    result=$(cd "$dir" && pack)
    write_mirror_toml "${result% *}" "${result#* }"
  else
    (cd "$dir" && fetch_suite "${suite_of[$want]}" "$dir/apt")
    result=$(cd "$dir" && pack)
  fi
  if [ "$want" != own ] && [ "${result% *}" != "$want" ]; then
    die "Debian's ${suite_of[$want]} now carries etcd ${result% *}, not $want (mirror/v${result% *} was built)"
  fi
  built+=("$result")
  echo "mirror: $here/mirror/v${result% *}/etcd-v${result% *}-linux-amd64.tar.gz (${result#* })"
done
write_versions_toml "${built[@]}"
