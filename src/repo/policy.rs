//! What a package may be, beyond being well formed: the rules the builder
//! applies before a package enters the repository and again before it is
//! installed into a sandbox as root (see "Packages are data" in
//! docs/ARCHITECTURE.md).

use serde::{Deserialize, Serialize};

use crate::config::{format_size, Config};
use crate::ports::Origin;

/// LOCALBASE of the bundled framework (`ports-testdata/Mk/bsd.port.mk`), the
/// one prefix its packages may have. Another framework (pkgsrc: `/usr/pkg`)
/// passes its own through [`PackagePolicy::prefix`].
pub const LOCALBASE: &str = "/usr/local";

/// The limits and expectations one package is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePolicy {
    /// The only prefix accepted; every path must lie strictly below it and
    /// every symlink must point at it or below it.
    pub prefix: String,
    /// Largest package file (compressed) read: `tmpfs_size`.
    pub max_file_size: u64,
    /// Largest expanded size (every byte the decompressor yields, headers
    /// included): `package_size_limit`.
    pub max_expanded_size: u64,
    /// Setuid, setgid and sticky bits are accepted (the origin is listed
    /// in `setuid_ports`).
    pub allow_setuid: bool,
    /// `cat/port[@flavor]` the package must be of, if known: the origin and
    /// flavor a bundled `+MANIFEST` names; for pkgsrc, `+BUILD_INFO`'s
    /// PKGPATH, and a MULTI_VERSION variant's PKGBASE.
    pub expected_origin: Option<String>,
}

impl PackagePolicy {
    /// The policy for the package of `origin` under `config`, with the
    /// bundled framework's LOCALBASE.
    pub fn for_port(config: &Config, origin: &Origin) -> PackagePolicy {
        let listed = |entry: &String| *entry == origin.dir() || *entry == origin.to_string();
        PackagePolicy {
            prefix: config.framework.framework().localbase().to_string(),
            max_file_size: config.tmpfs_size,
            max_expanded_size: config.package_size_limit,
            allow_setuid: config.setuid_ports.iter().any(listed),
            expected_origin: Some(origin.to_string()),
        }
    }

    /// A policy that expects no particular origin: for tests and tools.
    pub fn any_origin(prefix: &str, max_file_size: u64, max_expanded_size: u64) -> PackagePolicy {
        PackagePolicy {
            prefix: prefix.to_string(),
            max_file_size,
            max_expanded_size,
            allow_setuid: false,
            expected_origin: None,
        }
    }

    pub(crate) fn file_limit(&self) -> String {
        format!("the file size limit (tmpfs_size) of {}", format_size(self.max_file_size))
    }

    pub(crate) fn expanded_limit(&self) -> String {
        format!("the package_size_limit of {}", format_size(self.max_expanded_size))
    }
}
