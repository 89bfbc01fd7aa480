//! The scan cache: a port directory's parsed metadata, reused while the CRCs
//! of the directory and of every makefile it read are unchanged.
//!
//! The scanner loads it whole before a scan and stores what changed in one
//! transaction afterwards; a cache that fails to load is just a full scan.

use foldhash::HashMap;

use anyhow::{Context, Result};
use rusqlite::params;
use rusqlite::types::Type;

use super::records::ScanCacheEntry;
use super::store::{now_ms, BuildDb};

impl BuildDb {
    /// Every cached scan result, by port directory (`category/port`).
    pub fn scan_cache_load(&self) -> Result<HashMap<String, ScanCacheEntry>> {
        let read = || -> rusqlite::Result<HashMap<String, ScanCacheEntry>> {
            let mut statement = self.conn.prepare("SELECT dir, dir_crc, makefiles, metadata FROM scan_cache")?;
            let rows = statement.query_map([], |row| {
                let makefiles: String = row.get(2)?;
                let entry = ScanCacheEntry {
                    dir_crc: row.get(1)?,
                    makefiles: serde_json::from_str(&makefiles)
                        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e)))?,
                    metadata: row.get(3)?,
                };
                Ok((row.get(0)?, entry))
            })?;
            rows.collect()
        };
        read().with_context(|| self.at("loading the scan cache"))
    }

    /// Inserts or replaces these entries, all in one transaction.
    pub fn scan_cache_store(&self, entries: &[(String, ScanCacheEntry)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        {
            let mut statement = tx
                .prepare(
                    "INSERT INTO scan_cache (dir, dir_crc, makefiles, metadata, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (dir) DO UPDATE SET dir_crc = excluded.dir_crc, makefiles = excluded.makefiles,
                        metadata = excluded.metadata, updated_ms = excluded.updated_ms",
                )
                .with_context(|| self.at("preparing to store the scan cache"))?;
            let now = now_ms();
            for (dir, entry) in entries {
                let makefiles = serde_json::to_string(&entry.makefiles)
                    .with_context(|| self.at(format_args!("encoding the makefile list of {dir}")))?;
                statement
                    .execute(params![dir, entry.dir_crc, makefiles, entry.metadata, now])
                    .with_context(|| self.at(format_args!("storing the scan result of {dir}")))?;
            }
        }
        tx.commit().with_context(|| self.at("committing the scan cache"))
    }

    /// Forgets these port directories; returns how many were cached.
    pub fn scan_cache_remove<I, S>(&self, dirs: I) -> Result<usize>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tx = self.write_tx()?;
        let mut removed = 0;
        {
            let mut statement = tx
                .prepare("DELETE FROM scan_cache WHERE dir = ?1")
                .with_context(|| self.at("preparing to prune the scan cache"))?;
            for dir in dirs {
                let dir = dir.as_ref();
                removed += statement
                    .execute([dir])
                    .with_context(|| self.at(format_args!("removing {dir} from the scan cache")))?;
            }
        }
        tx.commit().with_context(|| self.at("committing the scan cache pruning"))?;
        Ok(removed)
    }
}
