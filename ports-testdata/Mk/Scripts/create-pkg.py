#!/usr/bin/env python3
"""create-pkg.py -- write ${PKGFILE} for a staged port.

The package is a zstd-compressed tar holding +MANIFEST first, then every
packing-list entry relative to / (e.g. usr/local/bin/hello).  The archive is
deterministic (sorted, owner 0:0, mtime 0).  +MANIFEST is JSON:

  {"name", "version", "origin", "flavor", "comment", "prefix",
   "deps": [{"name", "version", "origin"}],   # RUN_DEPENDS + LIB_DEPENDS
   "files": [{"path", "sha256"}]}              # symlinks: sha256 of target

The dependency names/versions come from `${MAKE} -V PKGBASE -V PKGVERSION`
in each dependency's port directory (with FLAVOR set for @flavor origins).
Everything is read from the environment set up by bsd.port.mk.  The file
is written to ${PKGFILE}.tmp and renamed into place.
"""
import hashlib
import json
import os
import subprocess
import sys

env = os.environ
origin_self = env.get("PKGORIGIN", "?")


def die(msg):
    sys.stderr.write("===> %s: %s\n" % (origin_self, msg))
    sys.exit(1)


def dep_origins():
    seen = []
    for kind in ("RUN", "LIB"):
        for entry in env.get(kind + "_DEPENDS", "").split():
            parts = entry.split(":")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                die("malformed dependency '%s' in %s_DEPENDS" % (entry, kind))
            origin = parts[1]
            prefix = env["PORTSDIR"].rstrip("/") + "/"
            if origin.startswith(prefix):
                origin = origin[len(prefix):]
            if origin.count("/") != 1 or origin.startswith("/"):
                die("malformed origin '%s' in %s_DEPENDS" % (origin, kind))
            if origin not in seen:
                seen.append(origin)
    return seen


def dep_info(origin):
    path, _, flavor = origin.partition("@")
    portdir = os.path.join(env["PORTSDIR"], path)
    if not os.path.isfile(os.path.join(portdir, "Makefile")):
        die("dependency %s: no port at %s" % (origin, portdir))
    child_env = {k: v for k, v in env.items()
                 if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", ".MAKE.LEVEL.ENV")}
    child_env["FLAVOR"] = flavor
    cmd = [env.get("MAKE", "bmake"), "-m", env["MKDIR"], "-C", portdir,
           "PORTSDIR=" + env["PORTSDIR"], "-V", "PKGBASE", "-V", "PKGVERSION"]
    res = subprocess.run(cmd, env=child_env, capture_output=True, text=True)
    lines = res.stdout.splitlines()
    if res.returncode != 0 or len(lines) != 2 or not lines[0]:
        die("cannot query dependency %s: %s" % (origin, res.stderr.strip()))
    return {"name": lines[0], "version": lines[1], "origin": origin}


def sha256_of(path):
    if os.path.islink(path):
        return hashlib.sha256(os.readlink(path).encode()).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    stagedir = env["STAGEDIR"]
    wrkdir = env["WRKDIR"]
    pkgfile = env["PKGFILE"]
    plist = subprocess.run(["sh", os.path.join(env["SCRIPTSDIR"], "plist.sh")],
                           capture_output=True, text=True)
    if plist.returncode != 0:
        die("cannot compute the packing list: " + plist.stderr.strip())
    paths = [p for p in plist.stdout.splitlines() if p]
    files = []
    for p in paths:
        full = stagedir + p
        if not (os.path.islink(full) or os.path.isfile(full)):
            die("packing list entry %s is not staged (%s)" % (p, full))
        files.append({"path": p, "sha256": sha256_of(full)})
    manifest = {
        "name": env["PKGBASE"],
        "version": env["PKGVERSION"],
        "origin": origin_self,
        "flavor": env.get("FLAVOR", ""),
        "comment": env.get("COMMENT", ""),
        "prefix": env["PREFIX"],
        "deps": sorted((dep_info(o) for o in dep_origins()), key=lambda d: d["origin"]),
        "files": files,
    }
    metadir = os.path.join(wrkdir, ".pkg-meta")
    os.makedirs(metadir, exist_ok=True)
    with open(os.path.join(metadir, "+MANIFEST"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    listfile = os.path.join(wrkdir, ".pkg-files")
    with open(listfile, "w") as f:
        for p in paths:
            f.write(p.lstrip("/") + "\n")
    os.makedirs(os.path.dirname(pkgfile), exist_ok=True)
    tmp = pkgfile + ".tmp"
    tar = ["tar", "--format=gnu", "--sort=name", "--owner=0", "--group=0",
           "--numeric-owner", "--mtime=@0", "--no-recursion", "-cf", "-",
           "-C", metadir, "+MANIFEST",
           "-C", stagedir, "--verbatim-files-from", "-T", listfile]
    # zstd reads the tar from a pipe, so it cannot see the input size and
    # sizes its level-19 tables for the worst case: ~80 MB of page faults and
    # ~75 ms of CPU even for a package of a few bytes. The size hint (the
    # archive is about the staged files plus a header block each) makes that
    # about 5 ms and compresses the same.
    size_hint = 512 * (len(paths) + 4) + os.path.getsize(os.path.join(metadir, "+MANIFEST")) + \
        sum(os.lstat(stagedir + p).st_size for p in paths)
    try:
        with open(tmp, "wb") as out:
            t = subprocess.Popen(tar, stdout=subprocess.PIPE)
            z = subprocess.Popen(["zstd", "-q", "-19", "-T1", "--size-hint=%d" % size_hint, "-c"],
                                 stdin=t.stdout, stdout=out)
            t.stdout.close()
            zrc = z.wait()
            trc = t.wait()
        if trc != 0 or zrc != 0:
            raise RuntimeError("tar exit %d, zstd exit %d" % (trc, zrc))
        os.rename(tmp, pkgfile)
    except Exception as e:  # never leave a partial package behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        die("creating %s failed: %s" % (pkgfile, e))


main()
