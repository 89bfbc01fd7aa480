//! pkgsrc (NetBSD's framework): for now, the bootstrap kit.

pub mod kit;
