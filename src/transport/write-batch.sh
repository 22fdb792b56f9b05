#!/bin/sh
# Batched atomic file writes, run by cairn (src/transport/ops.rs, write_files_atomic) as
#   sh -c "$SCRIPT" cairn-write-batch TOKEN DEST MODE OWNER GROUP [DEST MODE OWNER GROUP]... < input
# stdin holds a line with the size in bytes of a tar archive, then exactly that archive, then a
# line `end`, so a cut-off input is detected before anything is renamed (tar itself accepts an
# archive cut off between two members). The archive holds each destination's content at
# DIR/.cairn-tmp.TOKEN/BASENAME (relative to /; DIR/BASENAME is the destination) with its mode
# (0600 when MODE is empty) in the header. Each such staging directory is made 0700 and only if
# absent, so nothing else can read the content meanwhile; tar extracts only into the staging
# directories made here (never creating a destination's missing parent). Then the staged files
# get their owner and group ($3:$4, when either is non-empty; chown clears setuid and setgid, so
# those modes are set again after it), one `sync` flushes them all, one `mv` per directory renames
# them over their destinations (each rename(2) atomic), the staging directories are removed, and
# one more `sync` flushes every directory touched. A file that fails (no such directory, an owner
# that does not exist, a destination that is a directory) is left as it was and the others go
# on. Prints one line per destination, in order: `ok`, or `fail` and what went wrong. Exits
# non-zero, renaming nothing, when the input is cut off or tar fails (a full disk).
# Forks no process per file: mkdir, head, tar, sync, rm and sync once per batch, mv once per
# distinct directory, chown once per distinct owner (and chmod once per distinct setuid/setgid
# mode among the files chowned). Needs GNU tar (the `tar` of Debian and most distributions) and
# GNU coreutils. Paths never hold a newline or a tab (cairn refuses such paths), so lists are
# newline-separated; cairn sends only plain paths (no `.`, `..` or empty component).
set -u
nl='
'
tab='	'
umask 077
token=$1
shift
# Staging directories made by this run, removed with what they hold at the end or if the script
# stops half-way.
made=
trap 'if [ -n "$made" ]; then IFS=$nl; set -f; rm -rf -- $made; fi' EXIT
# A dead connection closes our output (SIGPIPE) or hangs up: the cleanup above must still run
# (as in write.sh).
trap '' PIPE
trap 'exit 1' HUP INT TERM
stop() {
  echo "cairn-write-batch: $1" >&2
  exit 1
}
command -v tar > /dev/null || stop "no tar on this host: cairn's batched write needs GNU tar; nothing written"

# One entry per destination: STAGED<TAB>DEST, STAGED being the staging directory/BASENAME.
entries=
# The distinct staging directories, in order.
stages=
# OWNER:GROUP<TAB>STAGED and MODE<TAB>STAGED (setuid or setgid modes of chowned files only).
owners='' modes=''
while [ $# -ge 4 ]; do
  dest=$1 mode=$2 owner=$3 group=$4
  shift 4
  stage="${dest%/*}/.cairn-tmp.$token"
  staged="$stage/${dest##*/}"
  entries="$entries$staged$tab$dest$nl"
  case $nl$stages in
    *"$nl$stage$nl"*) ;;
    *) stages="$stages$stage$nl" ;;
  esac
  if [ -n "$owner$group" ]; then
    owners="$owners$owner:$group$tab$staged$nl"
    case $mode in
      [2-7][0-7][0-7][0-7]) modes="$modes$mode$tab$staged$nl" ;;
    esac
  fi
done

IFS=$nl
set -f
# STAGED-or-STAGE<TAB>REASON of what failed: a staging directory (all its files) or one file.
failed=
# Sets `why` to the reason $1 (a staged file) failed, or to nothing (builtins only).
reason() {
  why=
  for key in "$1" "${1%/*}"; do
    case $nl$failed in
      *"$nl$key$tab"*)
        why=${failed#*"$nl$key$tab"}
        why=${why%%"$nl"*}
        return
        ;;
    esac
  done
}
failed=$nl
tomake=
for stage in $stages; do
  dir=${stage%/*}
  if ! [ -d "${dir:-/}" ]; then
    failed="$failed$stage${tab}no directory ${dir:-/}$nl"
  elif [ -e "$stage" ] || [ -L "$stage" ]; then
    failed="$failed$stage${tab}cannot create a temp directory in ${dir:-/}: $stage already exists$nl"
  else
    tomake="$tomake$stage$nl"
  fi
done
made=$tomake
if [ -n "$tomake" ]; then
  # shellcheck disable=SC2086 # one directory per line
  mkerr=$(mkdir -m 0700 -- $tomake 2>&1)
  made=
  for stage in $tomake; do
    if [ -d "$stage" ] && ! [ -L "$stage" ]; then
      made="$made$stage$nl"
      continue
    fi
    said=$mkerr
    for line in $mkerr; do
      case $line in
        *"$stage"*) said=$line ;;
      esac
    done
    IFS="$nl$tab"
    why=
    for word in $said; do why="${why:+$why }$word"; done
    IFS=$nl
    failed="$failed$stage${tab}cannot create a temp directory in ${stage%/*}: $why$nl"
  done
fi

IFS= read -r size || stop "input ended early; nothing renamed"
case $size in
  '' | *[!0-9]*) stop "bad size line; nothing renamed" ;;
esac
if [ -n "$made" ]; then
  members=
  for stage in $made; do members="$members${stage#/}$nl"; done
  # GNU head reads no more than it was asked for, so the `end` line stays on stdin; -m: the
  # files get the time they were written, as a new file would.
  # shellcheck disable=SC2086 # one member per line
  head -c "$size" | tar -x -p -m --no-same-owner -C / -f - -- $members \
    || stop "tar could not extract the files (above); nothing renamed"
else
  head -c "$size" > /dev/null
fi
IFS= read -r end || end=
[ "$end" = end ] || stop "input ended early; nothing renamed"

# Runs "$1" (chown or chmod) once per distinct value of the VALUE<TAB>STAGED list in $2, over
# those staged files that have not failed so far.
apply_attr() {
  done_values=$nl
  for item in $2; do
    value=${item%%"$tab"*}
    case $done_values in
      *"$nl$value$nl"*) continue ;;
    esac
    done_values="$done_values$value$nl"
    files=
    for other in $2; do
      [ "${other%%"$tab"*}" = "$value" ] || continue
      reason "${other#*"$tab"}"
      [ -n "$why" ] || files="$files${other#*"$tab"}$nl"
    done
    [ -n "$files" ] || continue
    # shellcheck disable=SC2086 # one file per line
    if ! err=$("$1" -- "$value" $files 2>&1); then
      IFS="$nl$tab"
      why=
      for word in $err; do why="${why:+$why }$word"; done
      IFS=$nl
      for f in $files; do failed="$failed$f$tab$why$nl"; done
    fi
  done
}
apply_attr chown "$owners"
apply_attr chmod "$modes"

# The staged files that go on to be renamed.
written=
for entry in $entries; do
  staged=${entry%%"$tab"*}
  reason "$staged"
  [ -z "$why" ] || continue
  if [ -f "$staged" ]; then
    written="$written$staged$nl"
  else
    failed="$failed$staged${tab}missing from the archive$nl"
  fi
done
# shellcheck disable=SC2086 # one file per line
if [ -n "$written" ] && ! sync -- $written; then stop "sync failed; nothing renamed"; fi
for stage in $made; do
  files=
  for staged in $written; do
    [ "${staged%/*}" = "$stage" ] && files="$files$staged$nl"
  done
  dir=${stage%/*}
  # Each file fails or succeeds alone; which did is seen below, by what is still staged.
  # shellcheck disable=SC2086 # one file per line
  [ -z "$files" ] || mv -f -- $files "${dir:-/}" 2> /dev/null
done
dirs=
for entry in $entries; do
  staged=${entry%%"$tab"*} dest=${entry#*"$tab"}
  reason "$staged"
  if [ -n "$why" ]; then
    printf 'fail %s\n' "$why"
  elif [ -e "$staged" ] || [ -L "$staged" ]; then
    if [ -d "$dest" ] && ! [ -L "$dest" ]; then
      printf 'fail %s is a directory\n' "$dest"
    else
      printf 'fail cannot rename %s to %s\n' "$staged" "$dest"
    fi
  else
    printf 'ok\n'
    dir=${dest%/*}
    case $nl$dirs in
      *"$nl${dir:-/}$nl"*) ;;
      *) dirs="$dirs${dir:-/}$nl" ;;
    esac
  fi
done
# What is left in the staging directories: the files that failed.
# shellcheck disable=SC2086 # one directory per line
[ -z "$made" ] || rm -rf -- $made
made=
# shellcheck disable=SC2086 # one directory per line
[ -z "$dirs" ] || sync -- $dirs 2> /dev/null || true
