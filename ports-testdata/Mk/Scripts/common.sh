# common.sh -- shared helpers for the Mk/Scripts shell scripts (POSIX sh).
# Sourced, not executed.

msg() { echo "===> $*"; }
err() { echo "===> ${PKGORIGIN:-?}: $*" >&2; }

# distdir: where this port's distfiles live.
distdir() {
	if [ -n "${DIST_SUBDIR:-}" ]; then
		echo "$DISTDIR/$DIST_SUBDIR"
	else
		echo "$DISTDIR"
	fi
}

# distinfo_key FILE: the name used for FILE in distinfo (with DIST_SUBDIR/).
distinfo_key() {
	if [ -n "${DIST_SUBDIR:-}" ]; then
		echo "$DIST_SUBDIR/$1"
	else
		echo "$1"
	fi
}

# distinfo_get ALGO KEY: the recorded value ("" if none).
distinfo_get() {
	[ -f "$DISTINFO_FILE" ] || return 0
	awk -v k="$1 ($2) = " 'index($0, k) == 1 { print substr($0, length(k) + 1); exit }' \
		"$DISTINFO_FILE"
}

file_sha256() { sha256sum < "$1" | cut -d' ' -f1; }
file_size() { wc -c < "$1" | tr -d ' '; }
