#!/usr/bin/env python3
"""pkg-tool.py -- minimal package (de)installer for portsynth packages.

  pkg-tool.py add FILE.pkg      extract under ${PKG_ROOTDIR}/ and record
                                ${PKG_ROOTDIR}${PKGDB_DIR}/<name>/+MANIFEST
  pkg-tool.py delete NAME       remove the files listed in that manifest,
                                empty directories below PREFIX/<dir>/, and
                                the pkgdb entry
  pkg-tool.py info FILE.pkg     print the package's +MANIFEST
"""
import json
import os
import subprocess
import sys

root = os.environ.get("PKG_ROOTDIR", "").rstrip("/")
pkgdb = os.environ.get("PKGDB_DIR", "/usr/local/.pkgdb")


def read_manifest(pkg):
    res = subprocess.run("zstd -dc '%s' | tar -xOf - +MANIFEST" % pkg.replace("'", "'\\''"),
                         shell=True, capture_output=True)
    if res.returncode != 0:
        sys.exit("pkg-tool: cannot read +MANIFEST of %s: %s" % (pkg, res.stderr.decode()))
    return res.stdout


def add(pkg):
    raw = read_manifest(pkg)
    m = json.loads(raw)
    dest = root or "/"
    res = subprocess.run("zstd -dc '%s' | tar -xf - -C '%s' --exclude=+MANIFEST"
                         % (pkg.replace("'", "'\\''"), dest), shell=True)
    if res.returncode != 0:
        sys.exit("pkg-tool: extracting %s failed" % pkg)
    d = root + os.path.join(pkgdb, m["name"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "+MANIFEST"), "wb") as f:
        f.write(raw)
    print("===> Installed %s-%s" % (m["name"], m["version"]))


def delete(name):
    mpath = root + os.path.join(pkgdb, name, "+MANIFEST")
    with open(mpath) as f:
        m = json.load(f)
    prefix = m.get("prefix", "/usr/local").rstrip("/")
    dirs = set()
    for entry in m["files"]:
        p = root + entry["path"]
        if os.path.lexists(p):
            os.unlink(p)
        dirs.add(os.path.dirname(entry["path"]))
    # remove directories that became empty, but never PREFIX or its
    # first-level directories (bin, lib, share ...) nor share/man, share/doc
    keep = {prefix, prefix + "/share/man", prefix + "/share/doc"}
    for d in sorted(dirs, key=len, reverse=True):
        while d.startswith(prefix + "/") and d not in keep and \
                os.path.dirname(d) != prefix:
            try:
                os.rmdir(root + d)
            except OSError:
                break
            d = os.path.dirname(d)
    os.unlink(mpath)
    os.rmdir(os.path.dirname(mpath))
    try:
        os.rmdir(root + pkgdb)
    except OSError:
        pass
    print("===> Deinstalled %s-%s" % (m["name"], m["version"]))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("add", "delete", "info"):
        sys.exit(__doc__)
    if sys.argv[1] == "add":
        add(sys.argv[2])
    elif sys.argv[1] == "delete":
        delete(sys.argv[2])
    else:
        sys.stdout.write(read_manifest(sys.argv[2]).decode())


main()
