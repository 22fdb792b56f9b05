#!/bin/sh
# Makes a lab host's ssh slow, run by tests/faults.rs as
#   sh -c "$SCRIPT" faults-slow-sshd DELAY
# A socket unit on port 2222 hands each connection to a fresh `sshd -i` that first sleeps DELAY
# seconds: a real sshd that answers late (the host's own sshd on port 22 is left alone).
set -eu
delay=$1
cat > /etc/systemd/system/faults-slow.socket <<UNIT
[Socket]
ListenStream=2222
Accept=yes
UNIT
cat > /etc/systemd/system/faults-slow@.service <<UNIT
[Service]
ExecStart=/bin/sh -c 'sleep $delay; exec /usr/sbin/sshd -i'
StandardInput=socket
StandardError=journal
UNIT
mkdir -p /run/sshd
systemctl daemon-reload
systemctl restart faults-slow.socket
