#!/bin/sh
# Fleet benchmark (docs/benchmarks.md): boots N lab hosts, then measures, in the same run,
#   - the floor: N parallel `ssh host true` with the lab's key (fresh connections),
#   - a no-change plan of 1 dir + 20 templated files + 3 sensitive files + 1 unit per host,
#   - a converge of 20 file changes per host (a new value for the variable the 20 files use),
# each as the median of RUNS runs, printed beside the floor as a ratio, once with the ssh
# client's default key exchange and once with `KexAlgorithms curve25519-sha256` (see the note in
# docs/benchmarks.md). Also prints the remote commands per host of one converge (`apply -v`).
# Takes the lab down at the end. Never a pass/fail: numbers only.
#
#   bench/fleet.sh [HOSTS] [RUNS]        (as root; CAIRN=path/to/cairn, default target/release)
#
# The curve25519 runs give cairn's ssh a private ~/.ssh/config through a mount namespace of its
# own (`unshare --mount`), so nothing on the machine changes for anyone else.
set -eu

hosts=${1:-3}
runs=${2:-5}
cairn=${CAIRN:-$(pwd)/target/release/cairn}
name=${LAB_NAME:-fleet-bench}
work=$(mktemp -d /tmp/cairn-fleet.XXXXXX)
sshdir=$HOME/.ssh
made_sshdir=
if [ ! -d "$sshdir" ]; then
  mkdir -m 0700 "$sshdir"
  made_sshdir=yes
fi
cleanup() {
  "$cairn" lab down --name "$name" > /dev/null 2>&1 || true
  rm -rf -- "$work"
  if [ -n "$made_sshdir" ]; then rmdir -- "$sshdir" 2> /dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$cairn" ] || { echo "no cairn binary at $cairn (cargo build --release, or set CAIRN)" >&2; exit 2; }

echo "booting $hosts lab host(s) ($name)..." >&2
"$cairn" lab up --hosts "$hosts" --name "$name" --hosts-file "$work/lab.toml" > "$work/up.log" 2>&1 \
  || { cat "$work/up.log" >&2; exit 1; }
key=$(sed -n 's/^identity_file = "\(.*\)"$/\1/p' "$work/lab.toml")
known=$(sed -n 's/^known_hosts_file = "\(.*\)"$/\1/p' "$work/lab.toml")
addresses=$(sed -n 's/^address = "\(.*\)"$/\1/p' "$work/lab.toml")

mkdir "$work/ssh-curve"
printf 'Host *\n  KexAlgorithms curve25519-sha256\n' > "$work/ssh-curve/config"

# The spec: everything under /srv/bench; the 20 files change with `round`.
{
  printf 'include = ["lab.toml"]\n\n[vars]\nround = "0"\n\n[dir.bench]\npath = "/srv/bench"\n\n'
  i=1
  while [ "$i" -le 20 ]; do
    printf '[file.f%s]\npath = "/srv/bench/f%s.conf"\n' "$i" "$i"
    printf 'content = "file %s, round {{ vars.round }}, on {{ host.name }} ({{ host.address }})\\n"\n\n' "$i"
    i=$((i + 1))
  done
  for s in 1 2 3; do
    printf '[file.secret%s]\npath = "/srv/bench/secret%s"\nmode = "0600"\nsensitive = true\n' "$s" "$s"
    printf 'content = "secret %s of {{ host.name }}\\n"\n\n' "$s"
  done
  printf '[unit.bench]\nname = "cairn-bench.service"\n'
  printf 'content = "[Unit]\\nDescription=cairn fleet benchmark\\n[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n"\n'
  printf 'after = ["dir.bench"]\n'
} > "$work/cairn.toml"

now_ms() { date +%s%3N; }

# Runs "$@" with the key exchange of mode $kex: the client's default, or curve25519 through a
# private ~/.ssh/config.
with_kex() {
  if [ "$kex" = default ]; then
    "$@"
  else
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' \
      with-kex "$work/ssh-curve" "$sshdir" "$@"
  fi
}

# The lab's key and known hosts, and the key exchange of mode $kex (set by set_kex).
ssh_opts=
set_kex() {
  kex=$1
  ssh_opts="-n -i $key -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
  if [ "$kex" != default ]; then ssh_opts="$ssh_opts -o KexAlgorithms=$kex"; fi
}

floor_once() {
  for a in $addresses; do
    # shellcheck disable=SC2086 # options, split on purpose (the lab's paths have no spaces)
    ssh $ssh_opts "root@$a" true &
  done
  wait
}

# Milliseconds of one run of "$@" (output to $work/last.log; a failure stops the benchmark).
time_ms() {
  t0=$(now_ms)
  if ! "$@" > "$work/last.log" 2>&1; then
    cat "$work/last.log" >&2
    echo "failed: $*" >&2
    exit 1
  fi
  echo $(($(now_ms) - t0))
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

round=0
converge() {
  round=$((round + 1))
  with_kex "$cairn" apply -f "$work/cairn.toml" --var "round=$round" --auto-approve --parallelism "$hosts" "$@"
}
plan() { with_kex "$cairn" plan -f "$work/cairn.toml" --var "round=$round" --detailed-exitcode; }

set_kex default
with_kex "$cairn" apply -f "$work/cairn.toml" --auto-approve > "$work/first.log" 2>&1 || { cat "$work/first.log" >&2; exit 1; }
converge -v > "$work/verbose.log" 2>&1 || { cat "$work/verbose.log" >&2; exit 1; }
commands=$(sed -n 's/^node[0-9]*: [0-9]* connection(s), \([0-9]*\) remote command(s)$/\1/p' "$work/verbose.log" | sort -n | uniq | tr '\n' ' ')

# The client's CPU per fresh connection (user + system seconds, the mean of 10 to the first
# host), for the note on the key exchange.
first=$(echo "$addresses" | head -n 1)
kex_cpu() {
  # shellcheck disable=SC2016,SC2086 # expanded by the inner shell; options split on purpose
  /usr/bin/time -f '%U %S' -o "$work/cpu" sh -c 'i=0; while [ $i -lt 10 ]; do ssh "$@" true || exit 1; i=$((i + 1)); done' \
    ten $ssh_opts "root@$first"
  awk '{ printf "%.3f", ($1 + $2) / 10 }' "$work/cpu"
}

printf 'cairn %s, %s host(s), median of %s run(s), load average %s\n' \
  "$("$cairn" --version | cut -d' ' -f2)" "$hosts" "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'remote commands per host for a converge of 20 file changes: %s\n' "$commands"
printf '%-10s %-36s %10s %8s\n' kex measurement ms 'x floor'
for mode in default curve25519-sha256; do
  set_kex "$mode"
  rm -f -- "$work/floor" "$work/plan" "$work/converge"
  i=0
  while [ "$i" -lt "$runs" ]; do
    time_ms floor_once >> "$work/floor"
    time_ms plan >> "$work/plan"
    time_ms converge >> "$work/converge"
    i=$((i + 1))
  done
  floor=$(median < "$work/floor")
  cpu=$(kex_cpu)
  for m in floor plan converge; do
    ms=$(median < "$work/$m")
    case $m in
      floor) what="$hosts parallel ssh host true" ;;
      plan) what="no-change plan" ;;
      converge) what="converge, 20 file changes per host" ;;
    esac
    printf '%-10s %-36s %10s %8s\n' "${kex%%-*}" "$what" "$ms" "$(awk -v a="$ms" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')"
  done
  printf '%-10s %-36s %10s\n' "${kex%%-*}" "client CPU-s per fresh ssh connection" "$cpu"
done
