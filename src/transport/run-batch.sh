#!/bin/sh
# Many short commands in one round trip, run by cairn (src/transport/ops.rs, run_batched) as
#   sh -c "$SCRIPT" cairn-run-batch COUNT LINE... [COUNT LINE...]...
# Each group is COUNT command lines, each already quoted by cairn (src/transport/quote.rs, the
# one place that quotes), run in order with stdin closed until one fails; the groups are
# independent, so a failed group does not stop the next. Prints one line per group, in order:
# `ok`, or `fail`, the failed command and what it said.
set -u
while [ $# -gt 0 ]; do
  n=$1
  shift
  failed=
  while [ "$n" -gt 0 ]; do
    if [ -z "$failed" ] && ! err=$(eval "$1" 2>&1 < /dev/null); then
      # shellcheck disable=SC2016 # the backquotes are text
      failed=$(printf '`%s` failed: %s' "$1" "$err" | tr '\n\t' '  ')
    fi
    shift
    n=$((n - 1))
  done
  if [ -n "$failed" ]; then printf 'fail %s\n' "$failed"; else printf 'ok\n'; fi
done
