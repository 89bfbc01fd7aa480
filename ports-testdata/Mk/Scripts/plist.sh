#!/bin/sh
# plist.sh -- print the packing list: absolute paths, sorted, one a line.
#
# Sources: PLIST_FILES and the pkg-plist file (${PLIST}) when it exists.
# %%KEY%% is replaced from PLIST_SUB (KEY=value words); blank lines and
# @keyword lines are skipped; relative entries are relative to PREFIX.
set -eu

sedscript=""
for sub in $PLIST_SUB; do
	k=${sub%%=*}
	v=${sub#*=}
	sedscript="${sedscript}s|%%$k%%|$v|g;"
done
{
	for f in $PLIST_FILES; do echo "$f"; done
	if [ -n "${PLIST:-}" ] && [ -f "$PLIST" ]; then cat "$PLIST"; fi
} | sed -e "$sedscript" | while IFS= read -r line; do
	case $line in
	'' | @*) continue ;;
	/*) echo "$line" ;;
	*) echo "$PREFIX/$line" ;;
	esac
done | sed -e 's|//*|/|g' | LC_ALL=C sort -u
