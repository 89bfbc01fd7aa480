#!/bin/sh
# fetch-list.sh -- what fetch would download, for the builder that fetches
# on the port's behalf (port code itself never has network).  One line per
# distfile:
#   <distinfo key> <SIZE or -> <SHA256 or -> <url> [<url> ...]
# Nothing is downloaded or written.
set -u
. "$SCRIPTSDIR/common.sh"

for f in $DISTFILES; do
	key=$(distinfo_key "$f")
	size=$(distinfo_get SIZE "$key")
	sha=$(distinfo_get SHA256 "$key")
	line="$key ${size:--} ${sha:--}"
	for site in $MASTER_SITES; do
		case $site in */) ;; *) site="$site/" ;; esac
		line="$line $site$f"
	done
	printf '%s\n' "$line"
done
