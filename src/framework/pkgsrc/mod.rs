//! The pkgsrc framework (NetBSD's `mk/bsd.pkg.mk`).

pub mod pbulk;
pub mod resolve;
