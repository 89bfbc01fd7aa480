//! The framework's build phases, in the order a sandbox runs them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Depends,
    CheckSanity,
    Fetch,
    Checksum,
    Extract,
    Patch,
    Configure,
    Build,
    Stage,
    CheckPlist,
    Package,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Depends,
        Phase::CheckSanity,
        Phase::Fetch,
        Phase::Checksum,
        Phase::Extract,
        Phase::Patch,
        Phase::Configure,
        Phase::Build,
        Phase::Stage,
        Phase::CheckPlist,
        Phase::Package,
    ];

    /// The make target (and the name used in config and logs).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Depends => "depends",
            Phase::CheckSanity => "check-sanity",
            Phase::Fetch => "fetch",
            Phase::Checksum => "checksum",
            Phase::Extract => "extract",
            Phase::Patch => "patch",
            Phase::Configure => "configure",
            Phase::Build => "build",
            Phase::Stage => "stage",
            Phase::CheckPlist => "check-plist",
            Phase::Package => "package",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Fetch and checksum are the only phases with network and a writable
    /// distfiles directory; they run as root.
    pub fn is_fetch(self) -> bool {
        matches!(self, Phase::Fetch | Phase::Checksum)
    }

    /// Wall-clock limits in the spirit of poudriere's MAX_EXECUTION_TIME_*:
    /// generous for compiling, short for bookkeeping phases.
    pub fn default_timeout(self) -> Duration {
        let secs = match self {
            Phase::CheckSanity | Phase::Checksum | Phase::CheckPlist => 600,
            Phase::Depends | Phase::Fetch | Phase::Extract | Phase::Patch => 3600,
            Phase::Configure | Phase::Stage | Phase::Package => 7200,
            Phase::Build => 86400,
        };
        Duration::from_secs(secs)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for phase in Phase::ALL {
            assert_eq!(Phase::from_name(phase.name()), Some(phase));
        }
        assert_eq!(Phase::from_name("install"), None);
    }
}
