#!/bin/sh
# Reports what a fault left on a lab host, run by tests/faults.rs as
#   sh -c "$SCRIPT" faults-state DIR UNIT MANIFEST
# First waits (up to 20 s) until no program a killed cairn started here still runs (they run on
# to their end). Then one `KEY VALUE` line per fact: each file's sha256 and size in DIR and of the
# unit file, the last line of the certificate and of its key (never the key itself), the cairn
# table's drop rule, every temp file cairn could leave (beside the destinations, in
# /var/lib/cairn), the lock's size; last a `manifest` line followed by the manifest MANIFEST.
set -u
dir=$1 unit=$2 manifest=$3
tries=0
# (The brackets keep the pattern from matching this script's own command line.)
while pgrep -f '[c]airn-(write|lock|unlock|manifest|read|probe)|[s]ystemctl|[n]ft -f' > /dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -gt 200 ]; then echo "busy cairn's commands still run"; break; fi
  sleep 0.1
done
for f in "$dir/small.conf" "$dir/big.bin" "/etc/systemd/system/$unit"; do
  if [ -e "$f" ]; then echo "sha $f $(sha256sum < "$f" | cut -d' ' -f1) $(wc -c < "$f")"; else echo "sha $f -"; fi
done
echo "cert-end $(tail -n 1 "$dir/cert.pem" 2>/dev/null)"
echo "key-end $(tail -n 1 "$dir/key.pem" 2>/dev/null)"
if openssl x509 -noout -in "$dir/cert.pem" 2>/dev/null; then
  echo "cert-san $(openssl x509 -noout -ext subjectAltName -in "$dir/cert.pem" | tr -d ' \n')"
fi
echo "firewall $(nft list table inet cairn 2>/dev/null | grep -o 'saddr [0-9./]* tcp dport 20000 drop' | tr ' ' '_')"
find "$dir" /etc/systemd/system /var/lib/cairn -name '.cairn-tmp.*' -o -name '.tmp.*' -o -name '.lock.*' 2>/dev/null \
  | sed 's/^/temp /'
if [ -e /var/lib/cairn/lock ]; then echo "lock $(wc -c < /var/lib/cairn/lock)"; fi
echo manifest
cat -- "$manifest" 2>/dev/null
exit 0
