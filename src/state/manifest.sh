#!/bin/sh
# Writes a host manifest, run by cairn (src/state/host.rs, write_manifest) as
#   sh -c "$SCRIPT" cairn-manifest PATH SIZE [LOCK_ID] < manifest-json
# Replaces the manifest $1 with stdin atomically (0600 in a 0700 directory) once exactly SIZE ($2)
# bytes arrived, or deletes it when SIZE is 0 (the spec manages nothing there any more). Stdin
# also ends early when cairn or its connection dies mid-stream: a short manifest is never renamed
# into place, and only an announced empty one deletes it. With LOCK_ID ($3), the run's last
# command on the host, it then releases the apply lock when it is that run's (as unlock.sh does,
# with builtins) and prints `released`, or `kept` when the lock is another run's. Prints nothing
# else but errors; a failed write releases nothing. The manifest is one line of JSON
# (Manifest::to_text), copied with shell builtins: sync and mv are the only processes, and rm
# when the lock goes.
set -eu
umask 077
# ${#text} counts bytes, in any shell.
LC_ALL=C
size=$2
dir=/var/lib/cairn/manifests
if [ ! -d "$dir" ]; then
  mkdir -p "$dir"
  chmod 0700 /var/lib/cairn "$dir"
fi
# Releases the lock of id $3 (when given) and says whether it did.
release() {
  [ -n "${1:-}" ] || return 0
  if [ ! -e /var/lib/cairn/lock ]; then
    echo released
    return 0
  fi
  rec=''
  IFS= read -r rec < /var/lib/cairn/lock || :
  case $rec in
    *"\"id\":\"$1\""*)
      rm -f /var/lib/cairn/lock
      echo released
      ;;
    *) echo kept ;;
  esac
}
if [ "$size" -eq 0 ]; then
  rm -f -- "$1"
  release "${3:-}"
  exit 0
fi
tmp=$dir/.tmp.$$
trap 'rm -f -- "$tmp"' EXIT
# A dead connection closes our output (SIGPIPE) or hangs up: the cleanup above must still run.
trap '' PIPE
trap 'exit 1' HUP INT TERM
# The manifest is one line of JSON: a line cut short has no newline, and `read` fails.
text=''
if ! IFS= read -r text || [ "$((${#text} + 1))" -ne "$size" ]; then
  echo "input ended after $((${#text} + 1)) of $size bytes; $1 left as it was" >&2
  exit 1
fi
# Created only if absent (noclobber: O_EXCL), by the shell itself: no mktemp, cat or wc.
if ! (set -C && printf '%s\n' "$text" > "$tmp") 2> /dev/null; then
  tmp=$(mktemp "$dir/.tmp.XXXXXXXXXX")
  printf '%s\n' "$text" > "$tmp"
fi
sync -- "$tmp"
mv -f -- "$tmp" "$1"
trap - EXIT
release "${3:-}"
