# bsd.port.mk -- the portsynth ports framework (bmake).
#
# A port's Makefile sets its variables (and optionally pre-*/do-*/post-*
# targets) and ends with `.include <bsd.port.mk>`.  The builder runs
# `bmake -m <ports>/Mk <target>` with the port directory as cwd.
#
# Phases, in order (each later one runs the earlier ones it needs):
#   check-sanity fetch checksum extract patch configure build stage
#   check-plist package
# fetch and checksum only ever write below ${DISTDIR}; extract .. package
# only write below ${WRKDIR} (and ${PACKAGES}).  extract, patch, configure,
# build, stage and package leave a cookie file in ${WRKDIR}, so re-running a
# phase is a no-op.  Other targets: depends (and fetch-depends ...
# run-depends), makesum, clean, install, deinstall.
#
# See the "Ports tree contract" in the portsynth design document.

.if !defined(_PORTSYNTH_BSD_PORT_MK)
_PORTSYNTH_BSD_PORT_MK=	yes

.MAKE.EXPAND_VARIABLES=	yes

_MKDIR:=		${.PARSEDIR:tA}
SCRIPTSDIR?=		${_MKDIR}/Scripts

#
# Site defaults: the environment or the command line may override them.
#
PORTSDIR?=		${.CURDIR:H:H}
LOCALBASE?=		/usr/local
PREFIX?=		${LOCALBASE}
DISTDIR?=		${PORTSDIR}/distfiles
PACKAGES?=		${PORTSDIR}/packages
WRKDIRPREFIX?=
MAKE_JOBS_NUMBER?=	1
MAKE_CMD?=		make
FETCH_CMD?=		curl -fsSL
DIST_SUBDIR?=
DISTINFO_FILE?=		${.CURDIR}/distinfo
FILESDIR?=		${.CURDIR}/files
PKGDIR?=		${.CURDIR}
DESCR?=			${PKGDIR}/pkg-descr
PLIST?=			${PKGDIR}/pkg-plist
PKGDB_DIR?=		${LOCALBASE}/.pkgdb
SH?=			/bin/sh
.if exists(/usr/bin/python3)
PYTHON_CMD?=		/usr/bin/python3
.else
PYTHON_CMD?=		python3
.endif
CC?=			cc
CFLAGS?=		-O2 -pipe
CPPFLAGS?=
LDFLAGS?=

#
# Flavors.  FLAVOR defaults to the first entry of FLAVORS.  An empty FLAVOR
# in the environment means "default flavor"; an empty FLAVOR on the command
# line is handled through .MAKEFLAGS (command-line variables cannot be
# reassigned otherwise).
#
FLAVORS?=
.if !empty(FLAVORS)
.  if empty(FLAVOR)
FLAVOR:=		${FLAVORS:[1]}
.  endif
.  if empty(FLAVOR)
.MAKEFLAGS:		FLAVOR=${FLAVORS:[1]}
.  endif
.  if empty(FLAVORS:M${FLAVOR})
.    error Unknown flavor '${FLAVOR}', possible flavors: ${FLAVORS}
.  endif
.else
.  if !empty(FLAVOR)
.    error Unknown flavor '${FLAVOR}', possible flavors: (none: ${.CURDIR:H:T}/${.CURDIR:T} has no FLAVORS)
.  endif
FLAVOR?=
.endif

_DEPENDS_KINDS=		FETCH EXTRACT PATCH BUILD LIB RUN

# FreeBSD-style flavor helpers: a port's Makefile is parsed before FLAVOR is
# known, so it sets ${flavor}_VAR and the framework appends it to VAR.
.if !empty(FLAVOR)
.  for _v in PKGNAMEPREFIX PKGNAMESUFFIX
.    if defined(${FLAVOR}_${_v})
${_v}:=			${${_v}:U}${${FLAVOR}_${_v}}
.    endif
.  endfor
.  for _v in ${_DEPENDS_KINDS:S/$/_DEPENDS/} CONFIGURE_ARGS MAKE_ARGS PLIST_FILES CFLAGS
.    if defined(${FLAVOR}_${_v})
${_v}+=			${${FLAVOR}_${_v}}
.    endif
.  endfor
.endif

#
# Names and versions.
#
.if defined(DISTVERSION) && !defined(PORTVERSION)
PORTVERSION=		${DISTVERSION}
.endif
PORTVERSION?=
DISTVERSION?=		${PORTVERSION}
PORTREVISION?=		0
PORTEPOCH?=		0
PKGNAMEPREFIX?=
PKGNAMESUFFIX?=
PKGVERSION=		${PORTVERSION}${PORTREVISION:N0:C/.+/_&/}${PORTEPOCH:N0:C/.+/,&/}
PKGBASE=		${PKGNAMEPREFIX}${PORTNAME}${PKGNAMESUFFIX}
PKGNAME=		${PKGBASE}-${PKGVERSION}
PKGFILE=		${PACKAGES}/All/${PKGNAME}.pkg
PKGORIGIN=		${.CURDIR:H:T}/${.CURDIR:T}

.for _k in ${_DEPENDS_KINDS}
${_k}_DEPENDS?=
.endfor
CONFIGURE_ARGS?=
CONFIGURE_ENV?=
CONFIGURE_SCRIPT?=	configure
MAKE_ARGS?=
MAKE_ENV?=
ALL_TARGET?=		all
INSTALL_TARGET?=	install
PLIST_FILES?=
PLIST_SUB?=
MASTER_SITES?=

.if defined(BROKEN) && !empty(BROKEN)
IGNORE=			is marked as broken: ${BROKEN}
.endif

#
# Make jobs.  The builder passes MAKE_JOBS_NUMBER in the environment.  A port
# that is not safe for parallel make defines MAKE_JOBS_UNSAFE (with any value,
# as FreeBSD's Mk/bsd.port.mk reads it) and builds with one job whatever was
# passed, its commands' environment included.  _MAKE_JOBS_SAFE (yes or no) is
# what the scan reads.
#
.if defined(MAKE_JOBS_UNSAFE)
MAKE_JOBS_NUMBER=	1
.export MAKE_JOBS_NUMBER
_MAKE_JOBS_SAFE=	no
.else
_MAKE_JOBS_SAFE=	yes
.endif

#
# Work areas and distfiles.
#
# A flavored port keeps one work area per flavor below work/, so that the
# flavors of one port can be built by hand one after the other.
.if !empty(FLAVOR)
WRKDIR?=		${WRKDIRPREFIX}${.CURDIR}/work/${FLAVOR}
.else
WRKDIR?=		${WRKDIRPREFIX}${.CURDIR}/work
.endif
DISTNAME?=		${PORTNAME}-${DISTVERSION}
WRKSRC?=		${WRKDIR}/${DISTNAME}
STAGEDIR?=		${WRKDIR}/stage
EXTRACT_SUFX?=		.tar.gz
DISTFILES?=		${DISTNAME}${EXTRACT_SUFX}
_DISTDIR=		${DISTDIR}${DIST_SUBDIR:S,^,/,}

_EXTRACT_COOKIE=	${WRKDIR}/.extract_done
_PATCH_COOKIE=		${WRKDIR}/.patch_done
_CONFIGURE_COOKIE=	${WRKDIR}/.configure_done
_BUILD_COOKIE=		${WRKDIR}/.build_done
_STAGE_COOKIE=		${WRKDIR}/.stage_done
_PACKAGE_COOKIE=	${WRKDIR}/.package_done

# Environment for upstream builds.  bmake's MAKEFLAGS must not leak into
# GNU make (or into child bmakes for other ports).
_UNMAKEENV=		env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u .MAKE.LEVEL.ENV
_BUILD_ENV=		${_UNMAKEENV} CC=${CC:Q} CFLAGS=${CFLAGS:Q} \
			CPPFLAGS=${CPPFLAGS:Q} LDFLAGS=${LDFLAGS:Q} \
			PREFIX=${PREFIX:Q} LOCALBASE=${LOCALBASE:Q}
_MAKE_RUN=		${_BUILD_ENV} ${MAKE_ENV} ${MAKE_CMD}

# Make ${LOCALBASE}/bin (where dependencies get installed) visible to
# recipes, e.g. for a BUILD_DEPENDS tool.
.if empty(PATH:S/:/ /g:M${LOCALBASE}/bin)
PATH:=			${LOCALBASE}/bin:${LOCALBASE}/sbin:${PATH}
.export PATH
.endif

# Environment for the helper scripts in ${SCRIPTSDIR}.
_SCRIPT_ENV=		${_UNMAKEENV} \
			PORTSDIR=${PORTSDIR:Q} PKGORIGIN=${PKGORIGIN:Q} \
			PKGNAME=${PKGNAME:Q} PKGBASE=${PKGBASE:Q} \
			PKGVERSION=${PKGVERSION:Q} FLAVOR=${FLAVOR:Q} \
			LOCALBASE=${LOCALBASE:Q} PREFIX=${PREFIX:Q} \
			PKGDB_DIR=${PKGDB_DIR:Q} \
			DISTDIR=${DISTDIR:Q} DIST_SUBDIR=${DIST_SUBDIR:Q} \
			DISTFILES=${DISTFILES:Q} MASTER_SITES=${MASTER_SITES:Q} \
			DISTINFO_FILE=${DISTINFO_FILE:Q} FETCH_CMD=${FETCH_CMD:Q} \
			NO_CHECKSUM=${NO_CHECKSUM:U:Q} \
			WRKDIR=${WRKDIR:Q} STAGEDIR=${STAGEDIR:Q} \
			PLIST=${PLIST:Q} PLIST_FILES=${PLIST_FILES:Q} \
			PLIST_SUB=${_PLIST_SUB:Q} \
			PACKAGES=${PACKAGES:Q} PKGFILE=${PKGFILE:Q} \
			COMMENT=${COMMENT:U:Q} \
			MAKE=${MAKE:Q} MKDIR=${_MKDIR:Q} SCRIPTSDIR=${SCRIPTSDIR:Q} \
			${_DEPENDS_KINDS:@k@${k}_DEPENDS=${${k}_DEPENDS:Q}@}

_PLIST_SUB=		PORTNAME=${PORTNAME} PORTVERSION=${PORTVERSION} \
			PKGNAME=${PKGNAME} PKGBASE=${PKGBASE} FLAVOR=${FLAVOR} \
			PREFIX=${PREFIX} LOCALBASE=${LOCALBASE} ${PLIST_SUB}

_MSG=			@echo "===> "

#
# Default target.
#
.MAIN: all
all: build
.PHONY: all

#
# check-sanity: IGNORE (and BROKEN) and the mandatory variables.
#
_SANITY_MISSING=
.for _v in PORTNAME PORTVERSION COMMENT MAINTAINER CATEGORIES
.  if !defined(${_v}) || empty(${_v})
_SANITY_MISSING+=	${_v}
.  endif
.endfor

check-sanity: .PHONY
.if defined(IGNORE) && !empty(IGNORE)
	@echo "===> ${PKGORIGIN} (${PKGNAME}) "${IGNORE:Q} >&2; exit 1
.endif
.if !empty(_SANITY_MISSING)
	@echo "===> ${PKGORIGIN}: required variable(s) not set: ${_SANITY_MISSING:M*}" >&2; exit 1
.endif
.if !empty(MASTER_SITES) && !empty(DISTFILES) && !exists(${DISTINFO_FILE})
	@echo "===> ${PKGORIGIN}: warning: no distinfo file (${DISTINFO_FILE})" >&2
.endif
	@true

#
# Dependency checks: is each `what` of the *_DEPENDS present?
#
.for _k in ${_DEPENDS_KINDS}
${_k:tl}-depends: .PHONY
.  if !empty(${_k}_DEPENDS)
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/depends.sh ${_k}
.  endif
.endfor
depends: .PHONY
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/depends.sh ${_DEPENDS_KINDS}

#
# Empty hooks a port may extend.
#
.for _p in fetch checksum extract patch configure build stage install package
pre-${_p} post-${_p}: .PHONY
.endfor

#
# fetch: download missing distfiles (nothing outside DISTDIR is written).
#
fetch: .PHONY check-sanity fetch-depends pre-fetch do-fetch post-fetch
.ORDER: check-sanity fetch-depends pre-fetch do-fetch post-fetch
.if !target(do-fetch)
do-fetch: .PHONY
.  if !empty(DISTFILES)
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/fetch.sh
.  endif
.endif

#
# fetch-list: what fetch would download, one line per distfile (key, size,
# sha256, URLs); a builder that downloads on the port's behalf reads it.
#
fetch-list: .PHONY
.if !empty(DISTFILES)
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/fetch-list.sh
.endif

#
# checksum: verify SIZE and SHA256 of every distfile against distinfo.
#
checksum: .PHONY fetch pre-checksum do-checksum post-checksum
.ORDER: fetch pre-checksum do-checksum post-checksum
.if !target(do-checksum)
do-checksum: .PHONY
.  if !empty(DISTFILES)
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/checksum.sh
.  endif
.endif

#
# The cookie-guarded phases.  Each phase target first makes the previous
# phase, then -- only when its cookie is missing at that moment -- runs its
# sequence in a sub-make and touches the cookie.  Checking at run time (not
# with .if exists() at parse time) keeps `bmake clean build` correct.
#
_EXTRACT_SEQ=	checksum extract-depends _extract-wrkdir pre-extract do-extract post-extract
_PATCH_SEQ=	patch-depends pre-patch do-patch post-patch
_CONFIGURE_SEQ=	build-depends lib-depends pre-configure do-configure post-configure
_BUILD_SEQ=	pre-build do-build post-build
_STAGE_SEQ=	_stage-dir pre-stage pre-install do-install do-stage post-install post-stage
_PACKAGE_SEQ=	check-plist _package-dir pre-package do-package post-package

_SUBMAKE=	cd ${.CURDIR} && ${MAKE} -m ${_MKDIR}

.for _p _prev in extract check-sanity patch extract configure patch build configure stage build package stage
${_p}: .PHONY ${_prev}
.  if "${_p}" == "package"
	@if [ ! -e ${_${_p:tu}_COOKIE} ] || [ ! -e ${PKGFILE} ]; then \
		${_SUBMAKE} _${_p}-seq; \
	fi
.  else
	@if [ ! -e ${_${_p:tu}_COOKIE} ]; then \
		${_SUBMAKE} _${_p}-seq; \
	fi
.  endif

_${_p}-seq: .PHONY ${_${_p:tu}_SEQ}
	@touch ${_${_p:tu}_COOKIE}
.ORDER: ${_${_p:tu}_SEQ}
.endfor

_extract-wrkdir: .PHONY
	@mkdir -p ${WRKDIR}

_stage-dir: .PHONY
	@mkdir -p ${STAGEDIR}${PREFIX}

_package-dir: .PHONY
	@mkdir -p ${PACKAGES}/All

.if !target(do-extract)
do-extract: .PHONY
.  if !empty(DISTFILES)
	@for f in ${DISTFILES}; do \
		echo "===> Extracting $$f for ${PKGNAME}"; \
		tar -xf ${_DISTDIR}/$$f -C ${WRKDIR} --no-same-owner || \
		{ echo "===> ${PKGORIGIN}: extracting $$f failed" >&2; exit 1; }; \
	done
	@if [ ! -d ${WRKSRC} ]; then \
		echo "===> ${PKGORIGIN}: WRKSRC ${WRKSRC} does not exist after extract" >&2; \
		exit 1; \
	fi
.  else
	@mkdir -p ${WRKSRC}
.  endif
.endif

.if !target(do-patch)
do-patch: .PHONY
	@set -e; \
	patches=$$(cd ${FILESDIR} 2>/dev/null && LC_ALL=C ls -1d patch-* 2>/dev/null || true); \
	for p in $$patches; do \
		case $$p in *.orig|*.rej|*~) continue;; esac; \
		echo "===> Applying ${FILESDIR:T}/$$p for ${PKGNAME}"; \
		if ! patch -d ${WRKSRC} -p0 --forward --batch -E --no-backup-if-mismatch \
		    < ${FILESDIR}/$$p; then \
			echo "===> ${PKGORIGIN}: patch $$p failed to apply cleanly" >&2; \
			exit 1; \
		fi; \
	done
.endif

.if !target(do-configure)
do-configure: .PHONY
.  if defined(GNU_CONFIGURE) || defined(HAS_CONFIGURE)
	@echo "===> Configuring ${PKGNAME}"
	@cd ${WRKSRC} && ${_BUILD_ENV} ${CONFIGURE_ENV} \
		${SH} ./${CONFIGURE_SCRIPT} --prefix=${PREFIX} ${CONFIGURE_ARGS} || \
		{ echo "===> ${PKGORIGIN}: configure failed" >&2; exit 1; }
.  endif
.endif

.if !target(do-build)
do-build: .PHONY
.  if !defined(NO_BUILD)
	@echo "===> Building ${PKGNAME}"
	@${_MAKE_RUN} -C ${WRKSRC} -j${MAKE_JOBS_NUMBER} ${MAKE_ARGS} ${ALL_TARGET} || \
		{ echo "===> ${PKGORIGIN}: build failed" >&2; exit 1; }
.  endif
.endif

.if !target(do-install) && !target(do-stage)
do-install: .PHONY
.  if !defined(NO_BUILD) && !defined(NO_INSTALL)
	@echo "===> Staging ${PKGNAME} into ${STAGEDIR}"
	@${_MAKE_RUN} -C ${WRKSRC} ${MAKE_ARGS} DESTDIR=${STAGEDIR} PREFIX=${PREFIX} \
		${INSTALL_TARGET} || \
		{ echo "===> ${PKGORIGIN}: stage (${INSTALL_TARGET}) failed" >&2; exit 1; }
.  endif
.endif
.if !target(do-install)
do-install: .PHONY
.endif
.if !target(do-stage)
do-stage: .PHONY
.endif

#
# check-plist: staged files == packing list (PLIST_FILES + pkg-plist).
#
check-plist: .PHONY stage
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/check-plist.sh

#
# package: ${PKGFILE}, a zstd-compressed tar with +MANIFEST first.
#
.if !target(do-package)
do-package: .PHONY
	@echo "===> Packaging ${PKGNAME} into ${PKGFILE}"
	@${_SCRIPT_ENV} ${PYTHON_CMD} ${SCRIPTSDIR}/create-pkg.py
.endif

#
# makesum: (re)write distinfo from the distfiles (fetching what is missing).
#
makesum: .PHONY
.if !empty(DISTFILES)
	@cd ${.CURDIR} && ${MAKE} fetch NO_CHECKSUM=yes
	@${_SCRIPT_ENV} ${SH} ${SCRIPTSDIR}/makesum.sh
.else
	@echo "===> ${PKGORIGIN}: no distfiles, no distinfo needed"
.endif

#
# clean: remove the work area.
#
clean: .PHONY
	@echo "===> Cleaning ${PKGNAME}"
	@rm -rf ${WRKDIR}

#
# install / deinstall: add the package to (remove it from) ${LOCALBASE}
# and ${PKGDB_DIR}, as the builder does for dependencies.  PKG_ROOTDIR
# (default: empty, i.e. /) is prepended to every path.
#
PKG_ROOTDIR?=
install: .PHONY package
	@${_SCRIPT_ENV} PKG_ROOTDIR=${PKG_ROOTDIR:Q} ${PYTHON_CMD} ${SCRIPTSDIR}/pkg-tool.py add ${PKGFILE}

deinstall: .PHONY
	@${_SCRIPT_ENV} PKG_ROOTDIR=${PKG_ROOTDIR:Q} ${PYTHON_CMD} ${SCRIPTSDIR}/pkg-tool.py delete ${PKGBASE}

.endif # !_PORTSYNTH_BSD_PORT_MK
