#!/bin/sh
# Restores one etcd member's data dir from a snapshot (src/resource/cluster/etcd.rs, run_step
# Restore), run with the member's service stopped as
#   sh -c "$SCRIPT" cairn-restore SNAPSHOT NAME PEER_URL INITIAL_CLUSTER TOKEN DATA_DIR WAL_DIR ETCDUTL ETCDCTL
# The snapshot is restored into a new folder beside DATA_DIR (etcdutl when installed: etcd 3.6
# removed `snapshot restore` from etcdctl), owned like DATA_DIR; then everything in DATA_DIR moves
# into DATA_DIR.before-restore-STAMP (kept, never deleted) and the restored data moves in, so
# DATA_DIR itself (owner, mode, the unit's ReadWritePaths) stays. Prints where the old data went.
set -eu
snap=$1 name=$2 peer=$3 initial=$4 token=$5 data=$6 wal=$7 etcdutl=$8 etcdctl=$9
case $wal in
  "$data"/*) wal_rel=${wal#"$data"/} ;;
  *)
    echo "restore: the WAL dir $wal is outside the data dir $data; restore it by hand" >&2
    exit 2
    ;;
esac
stamp=$(date -u +%Y%m%dT%H%M%SZ)
new="$data.restoring-$stamp"
kept="$data.before-restore-$stamp"
rm -rf "$new"
restore() {
  if [ -x "$etcdutl" ]; then
    "$etcdutl" snapshot restore "$@"
  else
    ETCDCTL_API=3 "$etcdctl" snapshot restore "$@"
  fi
}
restore "$snap" --name "$name" --initial-cluster "$initial" --initial-cluster-token "$token" \
  --initial-advertise-peer-urls "$peer" --data-dir "$new" --wal-dir "$new/$wal_rel" >/dev/null 2>"$new.err" || {
  cat "$new.err" >&2
  rm -rf "$new" "$new.err"
  exit 1
}
rm -f "$new.err"
owner=$(stat -c %U:%G "$data")
chown -R "$owner" "$new"
mkdir -p "$kept"
chmod 0700 "$kept"
for entry in "$data"/* "$data"/.[!.]*; do
  [ -e "$entry" ] || continue
  mv "$entry" "$kept/"
done
for entry in "$new"/*; do
  [ -e "$entry" ] || continue
  mv "$entry" "$data/"
done
rmdir "$new"
sync
printf '%s\n' "$kept"
