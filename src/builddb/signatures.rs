//! Stat signatures (schema v3): loaded whole once per command into the
//! [`CrcMemo`](super::crc::CrcMemo), written back afterwards only for the
//! paths whose signature changed, in one transaction. Like the scan cache,
//! they only save time: a table that fails to load means every file is read.

use anyhow::{Context, Result};
use rusqlite::params;

use super::crc::{Signature, Signatures, Signed, StatSig};
use super::store::BuildDb;

const FILE: i64 = 0;
const DIR: i64 = 1;

impl BuildDb {
    /// Every stored signature, by path.
    pub fn signatures_load(&self) -> Result<Signatures> {
        let read = || -> rusqlite::Result<Signatures> {
            let mut statement = self.conn.prepare(
                "SELECT path, kind, size, mtime_ns, ctime_ns, inode, device, crc, basis, listing, recorded_ns
                 FROM signatures",
            )?;
            let mut rows = statement.query([])?;
            let mut signatures = Signatures::default();
            while let Some(row) = rows.next()? {
                let stat = StatSig {
                    size: row.get::<_, i64>(2)? as u64,
                    mtime_ns: row.get(3)?,
                    ctime_ns: row.get(4)?,
                    inode: row.get::<_, i64>(5)? as u64,
                    device: row.get::<_, i64>(6)? as u64,
                };
                let crc: Option<i64> = row.get(7)?;
                let signed = match (row.get::<_, i64>(1)?, crc) {
                    (FILE, Some(crc)) => Signed::File { crc: crc as u32 },
                    (DIR, _) => {
                        let basis: Option<i64> = row.get(8)?;
                        let listing: Option<String> = row.get(9)?;
                        let port = crc.zip(basis).map(|(crc, basis)| (crc as u32, basis as u32));
                        Signed::Dir { listing: listing.unwrap_or_default(), port }
                    }
                    _ => continue,
                };
                let path: String = row.get(0)?;
                signatures.insert(path, Signature { stat, recorded_ns: row.get(10)?, signed });
            }
            Ok(signatures)
        };
        read().with_context(|| self.at("loading the stat signatures"))
    }

    /// Inserts or replaces these signatures, all in one transaction.
    pub fn signatures_store(&self, signatures: &[(String, Signature)]) -> Result<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        {
            let mut statement = tx
                .prepare(
                    "INSERT OR REPLACE INTO signatures
                        (path, kind, size, mtime_ns, ctime_ns, inode, device, crc, basis, listing, recorded_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .with_context(|| self.at("preparing to store the stat signatures"))?;
            for (path, signature) in signatures {
                let stat = &signature.stat;
                let (kind, crc, basis, listing) = match &signature.signed {
                    Signed::File { crc } => (FILE, Some(*crc), None, None),
                    Signed::Dir { listing, port } => {
                        (DIR, port.map(|(crc, _)| crc), port.map(|(_, basis)| basis), Some(listing.as_str()))
                    }
                };
                statement
                    .execute(params![
                        path,
                        kind,
                        stat.size as i64,
                        stat.mtime_ns,
                        stat.ctime_ns,
                        stat.inode as i64,
                        stat.device as i64,
                        crc,
                        basis,
                        listing,
                        signature.recorded_ns
                    ])
                    .with_context(|| self.at(format_args!("storing the stat signature of {path}")))?;
            }
        }
        tx.commit().with_context(|| self.at("committing the stat signatures"))
    }
}
