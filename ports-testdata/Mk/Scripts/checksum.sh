#!/bin/sh
# checksum.sh -- verify every distfile against distinfo (SIZE and SHA256).
# A bad file is deleted; a file without a distinfo entry is an error.
set -u
. "$SCRIPTSDIR/common.sh"

[ -n "${NO_CHECKSUM:-}" ] && exit 0
dir=$(distdir)
rc=0
for f in $DISTFILES; do
	key=$(distinfo_key "$f")
	if [ ! -f "$dir/$f" ]; then
		err "distfile $dir/$f is missing (run fetch)"
		rc=1
		continue
	fi
	want_sha=$(distinfo_get SHA256 "$key")
	want_size=$(distinfo_get SIZE "$key")
	if [ -z "$want_sha" ] || [ -z "$want_size" ]; then
		err "no SHA256/SIZE for $key in $DISTINFO_FILE"
		rc=1
		continue
	fi
	got_sha=$(file_sha256 "$dir/$f")
	got_size=$(file_size "$dir/$f")
	if [ "$got_sha" = "$want_sha" ] && [ "$got_size" = "$want_size" ]; then
		msg "Checksum OK for $key"
	else
		err "checksum mismatch for $key"
		echo "     expected: SIZE $want_size SHA256 $want_sha" >&2
		echo "     actual:   SIZE $got_size SHA256 $got_sha" >&2
		rm -f "$dir/$f" 2>/dev/null || err "could not delete $dir/$f"
		rc=1
	fi
done
exit $rc
