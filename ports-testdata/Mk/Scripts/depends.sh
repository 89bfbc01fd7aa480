#!/bin/sh
# depends.sh KIND... -- check that every dependency `what` of the given
# kinds (FETCH EXTRACT PATCH BUILD LIB RUN; read from ${KIND}_DEPENDS) is
# present.  Entries are what:origin[:target] with origin cat/port[@flavor]
# (optionally prefixed with ${PORTSDIR}/).  `what` is:
#   /absolute/path      -> the path exists
#   lib*.so* / lib*.a   -> the library is in LOCALBASE/lib or a system libdir
#   name<op>version...  -> PKGDB_DIR/name/+MANIFEST exists and its version
#                          satisfies every constraint (ops < <= > >= = ==)
#   anything else       -> a program found in PATH (LOCALBASE/bin first)
set -u
. "$SCRIPTSDIR/common.sh"

PATH="$LOCALBASE/bin:$LOCALBASE/sbin:$PATH"
export PATH
libdirs="$LOCALBASE/lib /usr/local/lib /usr/lib /lib /usr/lib64 /lib64"
for d in /usr/lib/*-linux-gnu* /lib/*-linux-gnu*; do
	[ -d "$d" ] && libdirs="$libdirs $d"
done

# vercmp A B: prints -1, 0 or 1.
vercmp() {
	if [ "$1" = "$2" ]; then
		echo 0
	elif [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; then
		echo -1
	else
		echo 1
	fi
}

# pkg_ok SPEC: 0 when the installed package satisfies SPEC.
pkg_ok() {
	name=$(printf '%s' "$1" | sed -e 's/[<>=].*//')
	cons=${1#"$name"}
	manifest="$PKGDB_DIR/$name/+MANIFEST"
	[ -n "$name" ] && [ -f "$manifest" ] || return 1
	# The package's own version: the first "version" key (the manifest
	# lists name and version first, then the deps with versions of their own).
	have=$(tr -d '\n' < "$manifest" | sed -e 's/"deps".*//' |
		sed -n -e 's/.*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
	[ -n "$have" ] || return 1
	while [ -n "$cons" ]; do
		op=$(printf '%s' "$cons" | sed -e 's/^\([<>=]*\).*/\1/')
		rest=${cons#"$op"}
		ver=$(printf '%s' "$rest" | sed -e 's/[<>=].*//')
		cons=${rest#"$ver"}
		[ -n "$ver" ] || return 1
		c=$(vercmp "$have" "$ver")
		case $op in
		'<') [ "$c" -lt 0 ] ;;
		'<=') [ "$c" -le 0 ] ;;
		'>') [ "$c" -gt 0 ] ;;
		'>=') [ "$c" -ge 0 ] ;;
		'=' | '==') [ "$c" -eq 0 ] ;;
		*) false ;;
		esac || return 1
	done
	return 0
}

rc=0
for kind in "$@"; do
	eval "deps=\${${kind}_DEPENDS:-}"
	for entry in $deps; do
		what=${entry%%:*}
		origin=
		case $entry in *:*) origin=${entry#*:}; origin=${origin%%:*} ;; esac
		origin=${origin#"$PORTSDIR"/}
		case $origin in
		[!/]*/[!/]*) ;;
		*)
			err "malformed dependency '$entry' in ${kind}_DEPENDS (want what:cat/port[@flavor][:target])"
			rc=1
			continue
			;;
		esac
		if [ -z "$what" ]; then
			err "malformed dependency '$entry' in ${kind}_DEPENDS (empty what)"
			rc=1
			continue
		fi
		found=no
		case $what in
		/*)
			[ -e "$what" ] && found=yes
			;;
		*'<'* | *'>'* | *'='*)
			pkg_ok "$what" && found=yes
			;;
		lib*.so | lib*.so.* | lib*.a)
			for d in $libdirs; do
				if [ -e "$d/$what" ]; then found=yes; break; fi
			done
			;;
		*)
			command -v "$what" > /dev/null 2>&1 && found=yes
			;;
		esac
		if [ $found = no ]; then
			echo "missing dependency for $PKGORIGIN: $what ($origin, ${kind}_DEPENDS)" >&2
			rc=1
		fi
	done
done
exit $rc
