//! The ports tree: origins, dependency specs, phases, bmake queries, the scan
//! and the resolved dependency graph.

pub mod cache;
mod origin;
mod phase;
pub mod scan;
mod tree;

pub use origin::{DepKind, DepSpec, Origin, Requirement};
pub use phase::Phase;
pub use scan::{DirScan, PortMeta, ScanError, Scanner};
pub use tree::{Node, PortTree, Scope};
