#!/bin/sh
# fetch.sh -- download the missing distfiles of a port.
#
# Each missing file is tried from every MASTER_SITES entry in turn,
# downloaded to <file>.part, verified against distinfo (SIZE and SHA256,
# unless NO_CHECKSUM is set) and only then renamed to its final name, so
# the final name only ever holds a complete, verified file.  Only
# ${DISTDIR} is written.
#
# While a file is fetched, an exclusive flock(1) on
# ${DISTDIR}/.locks/<distinfo key>.lock is held: several ports (flavors,
# parallel builds, portsynth fetch-only) needing the same distfile download
# it once -- the others wait, then find it present.  The lock is on the open
# file, so it is released when the holder exits, however it exits.
#
# Errors are one line each, "===> <origin>: ...", which portsynth reads
# back from the log:
#   fetch of <url> failed: <last line of the fetch command's output>
#   checksum mismatch for <file> from <url>
#        expected: SIZE <n> SHA256 <hex>
#        actual:   SIZE <n> SHA256 <hex>
set -u
. "$SCRIPTSDIR/common.sh"

LOCK_FD_OPEN=no

# lock_distfile KEY: hold the lock of KEY on fd 9 (waits for other holders).
# Without flock(1) the fetch goes on unprotected, with a warning.
lock_distfile() {
	if ! command -v flock >/dev/null 2>&1; then
		err "warning: flock(1) not found; fetching $1 without a lock"
		return 0
	fi
	lock="$DISTDIR/.locks/$1.lock"
	if ! mkdir -p "${lock%/*}" || ! (: >>"$lock") 2>/dev/null; then
		err "cannot create the lock file $lock"
		return 1
	fi
	exec 9>>"$lock"
	LOCK_FD_OPEN=yes
	if ! flock -n 9; then
		msg "Waiting for $1: another fetch holds $lock"
		if ! flock 9; then
			err "cannot lock $lock"
			return 1
		fi
	fi
}

unlock_distfile() {
	if [ $LOCK_FD_OPEN = yes ]; then
		exec 9>&-
		LOCK_FD_OPEN=no
	fi
}

# fetch_one FILE KEY: download FILE into $dir under the lock of KEY.
fetch_one() {
	f=$1
	key=$2
	if [ -f "$dir/$f" ]; then
		msg "$key was fetched meanwhile by another port"
		return 0
	fi
	want_sha=$(distinfo_get SHA256 "$key")
	want_size=$(distinfo_get SIZE "$key")
	part="$dir/$f.part"
	if [ -z "$MASTER_SITES" ]; then
		err "$f is missing and MASTER_SITES is empty"
		return 1
	fi
	for site in $MASTER_SITES; do
		case $site in */) ;; *) site="$site/" ;; esac
		url="$site$f"
		msg "Fetching $url"
		rm -f "$part"
		# shellcheck disable=SC2086
		out=$($FETCH_CMD -o "$part" "$url" 2>&1 9>&-)
		status=$?
		[ -n "$out" ] && printf '%s\n' "$out" >&2
		if [ $status -ne 0 ]; then
			rm -f "$part"
			why=$(printf '%s\n' "$out" | sed -e '/^[[:space:]]*$/d' | tail -n 1)
			err "fetch of $url failed: ${why:-exit status $status}"
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
			return 0
		fi
		rm -f "$part"
	done
	err "could not fetch $f from any of: $MASTER_SITES"
	return 1
}

dir=$(distdir)
rc=0
for f in $DISTFILES; do
	[ -f "$dir/$f" ] && continue
	if ! mkdir -p "$dir"; then
		err "cannot create $dir"
		exit 1
	fi
	key=$(distinfo_key "$f")
	if ! lock_distfile "$key"; then
		rc=1
		continue
	fi
	fetch_one "$f" "$key" || rc=1
	unlock_distfile
done
exit $rc
