//! Ports frameworks. (Placeholder: the seam itself comes with the framework work;
//! this only holds the pkgsrc resolution.)

pub mod pkgsrc;
