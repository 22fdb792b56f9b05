#!/bin/sh
# Waits until cairn is streaming a big file on this host, run by tests/faults.rs as
#   sh -c "$SCRIPT" faults-wait-temp DIR SECONDS
# Exits 0 as soon as one of cairn's temp files in DIR holds more than 64 KiB (a write under way,
# not yet renamed into place), 1 when none did within SECONDS: a temp file beside its
# destination (write.sh, DIR/.cairn-tmp.*) or a file staged by a batched write (write-batch.sh,
# DIR/.cairn-tmp.TOKEN/NAME).
set -u
end=$(( $(date +%s) + $2 ))
while [ "$(date +%s)" -lt "$end" ]; do
  if [ -n "$(find "$1" -maxdepth 2 -path "$1/.cairn-tmp.*" -type f -size +64k)" ]; then
    exit 0
  fi
done
exit 1
