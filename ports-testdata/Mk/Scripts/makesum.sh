#!/bin/sh
# makesum.sh -- write distinfo (SHA256 and SIZE lines) from the distfiles.
set -eu
. "$SCRIPTSDIR/common.sh"

dir=$(distdir)
tmp="$DISTINFO_FILE.tmp"
: > "$tmp"
for f in $DISTFILES; do
	key=$(distinfo_key "$f")
	echo "SHA256 ($key) = $(file_sha256 "$dir/$f")" >> "$tmp"
	echo "SIZE ($key) = $(file_size "$dir/$f")" >> "$tmp"
done
mv -f "$tmp" "$DISTINFO_FILE"
msg "Wrote $DISTINFO_FILE"
