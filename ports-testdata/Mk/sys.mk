# sys.mk -- minimal system makefile for a portsynth ports tree.
#
# The builder runs `bmake -m <ports>/Mk`, which replaces bmake's default
# system include path; bmake reads this file before the port's Makefile.
# Keep it small: everything port related lives in bsd.port.mk.

.MAKE.EXPAND_VARIABLES=	yes

# Needed before bsd.port.mk is read, e.g. by
#   .include "${PORTSDIR}/Mk/Uses/warnings.mk"
PORTSDIR?=	${.CURDIR:H:H}

# Toolchain defaults (like BSD sys.mk), so that a port or a Mk/Uses file
# may append with CFLAGS+= before bsd.port.mk is included.
CC?=		cc
CFLAGS?=	-O2 -pipe

# No implicit suffix rules: phase names must never be mistaken for files
# to build from sources.
.SUFFIXES:
