//! Frameworks besides the bundled one.

pub mod pkgsrc;
