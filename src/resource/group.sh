#!/bin/sh
# Run by cairn (src/resource/user.rs, DesiredUser::apply) as
#   sh -c "$SCRIPT" cairn-group GROUP SYSTEM
# Creates the group $1 unless it exists; $2 non-empty makes it a system group. Prints nothing;
# exits non-zero when groupadd fails.
getent group "$1" >/dev/null && exit 0
if [ -n "$2" ]; then exec groupadd --system -- "$1"; else exec groupadd -- "$1"; fi
