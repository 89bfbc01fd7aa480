#!/bin/sh
# fetch.sh -- download the missing distfiles of a port.
#
# Each missing file is tried from every MASTER_SITES entry in turn,
# downloaded to <file>.part, verified against distinfo (SIZE and SHA256,
# unless NO_CHECKSUM is set) and only then renamed to its final name.
# Only ${DISTDIR} is written.
set -u
. "$SCRIPTSDIR/common.sh"

dir=$(distdir)
rc=0
for f in $DISTFILES; do
	[ -f "$dir/$f" ] && continue
	if ! mkdir -p "$dir"; then
		err "cannot create $dir"
		exit 1
	fi
	key=$(distinfo_key "$f")
	want_sha=$(distinfo_get SHA256 "$key")
	want_size=$(distinfo_get SIZE "$key")
	part="$dir/$f.part"
	ok=no
	if [ -z "$MASTER_SITES" ]; then
		err "$f is missing and MASTER_SITES is empty"
		rc=1
		continue
	fi
	for site in $MASTER_SITES; do
		case $site in */) ;; *) site="$site/" ;; esac
		url="$site$f"
		msg "Fetching $url"
		rm -f "$part"
		# shellcheck disable=SC2086
		if ! $FETCH_CMD -o "$part" "$url"; then
			rm -f "$part"
			err "fetch of $url failed"
			continue
		fi
		if [ -z "${NO_CHECKSUM:-}" ] && { [ -n "$want_sha" ] || [ -n "$want_size" ]; }; then
			got_sha=$(file_sha256 "$part")
			got_size=$(file_size "$part")
			if [ "$got_sha" != "$want_sha" ] || [ "$got_size" != "$want_size" ]; then
				err "checksum mismatch for $f from $url"
				echo "     expected: SIZE $want_size SHA256 $want_sha" >&2
				echo "     actual:   SIZE $got_size SHA256 $got_sha" >&2
				rm -f "$part"
				continue
			fi
		fi
		if mv -f "$part" "$dir/$f"; then
			ok=yes
			break
		fi
		rm -f "$part"
	done
	if [ $ok != yes ]; then
		err "could not fetch $f from any of: $MASTER_SITES"
		rc=1
	fi
done
exit $rc
