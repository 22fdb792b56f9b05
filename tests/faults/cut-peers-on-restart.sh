#!/bin/sh
# Cuts this etcd member off from its peers the moment its service has restarted, run by
# tests/etcd_partition.rs on one lab host as
#   sh -c "$SCRIPT" cut-peers SINCE SECONDS
# SINCE is etcd.service's ActiveEnterTimestampMonotonic before the rollout. As soon as it changes
# (the member restarted and told systemd it is ready), the nftables table `inet partition` drops
# every packet to or from the peer port 2380 in both directions, on this host only (the client
# port 2379 and ssh stay open). Prints the new timestamp and exits 0 then; exits 1 when the
# service did not restart within SECONDS. `nft delete table inet partition` heals it.
set -u
end=$(( $(date +%s) + $2 ))
while [ "$(date +%s)" -lt "$end" ]; do
  now=$(systemctl show -P ActiveEnterTimestampMonotonic etcd.service)
  if [ "$now" != "$1" ] && [ "$now" != 0 ]; then
    nft -f - <<'RULES' || exit 2
table inet partition {
  chain in {
    type filter hook input priority -10; policy accept;
    tcp dport 2380 drop
    tcp sport 2380 drop
  }
  chain out {
    type filter hook output priority -10; policy accept;
    tcp dport 2380 drop
    tcp sport 2380 drop
  }
}
RULES
    echo "$now"
    exit 0
  fi
  sleep 0.02
done
exit 1
