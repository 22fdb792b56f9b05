#!/bin/sh
# Batched file read, run by cairn (src/transport/ops.rs, read_files) as
#   sh -c "$SCRIPT" cairn-read PATH...
# Prints, for each argument, `-` if it is not a readable regular file, else its size on a line
# followed by exactly that many bytes (parse_read_output in ops.rs reads it).
for f do
  if [ -f "$f" ] && [ -r "$f" ]; then
    n=$(wc -c < "$f"); n=$((n + 0)); printf '%s\n' "$n"; head -c "$n" -- "$f"
  else printf -- '-\n'; fi
done
