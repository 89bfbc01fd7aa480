# Mk/Uses/warnings.mk -- shared include: build with extra compiler warnings.
#
# Usage (before bsd.port.mk):
#   .include "${PORTSDIR}/Mk/Uses/warnings.mk"
#
# WARNINGS_CFLAGS may be overridden by the port or the user.

.if !defined(_USES_WARNINGS_MK)
_USES_WARNINGS_MK=	yes

WARNINGS_CFLAGS?=	-Wall -Wextra -Wno-unused-parameter
CFLAGS+=		${WARNINGS_CFLAGS}

.endif
