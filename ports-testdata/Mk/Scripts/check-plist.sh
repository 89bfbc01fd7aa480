#!/bin/sh
# check-plist.sh -- compare the staged files (regular files and symlinks
# under STAGEDIR) with the packing list; fail on any difference.
set -eu
. "$SCRIPTSDIR/common.sh"

expected="$WRKDIR/.plist-expected"
actual="$WRKDIR/.plist-actual"
sh "$SCRIPTSDIR/plist.sh" > "$expected"
(cd "$STAGEDIR" && find . \( -type f -o -type l \) -print) | sed -e 's|^\.||' |
	LC_ALL=C sort -u > "$actual"
orphans=$(LC_ALL=C comm -23 "$actual" "$expected")
missing=$(LC_ALL=C comm -13 "$actual" "$expected")
msg "Checking the packing list of $PKGNAME"
rc=0
for f in $orphans; do
	err "staged but not in the packing list: $f"
	rc=1
done
for f in $missing; do
	err "in the packing list but not staged: $f"
	rc=1
done
if [ $rc -ne 0 ]; then
	err "check-plist failed"
fi
exit $rc
