//! The fetch phase, done by portsynth rather than by the port.
//!
//! Port code never has network. PID 1 asks the framework, as the build user
//! without network, what to fetch (its fetch list: per distfile the distinfo
//! key, what distinfo expects and the URLs to try; see
//! [`crate::framework::Framework::fetch_list_args`]), then downloads each
//! missing file itself:
//! - from the operator's `distfile_mirrors` first (each base URL with the
//!   key appended), then from the framework's sites unless `fetch_upstream`
//!   is false;
//! - under the per-distfile lock (the same `flock` as `fetch-only` and
//!   `purge-distfiles` take), into `<key>.part`, renamed to its final name
//!   only after its size and every digest distinfo lists matched (all
//!   computed in one read), so `distfiles_dir` only ever holds verified
//!   files;
//! - with `curl` run confined (build user, no capabilities, seccomp, its own
//!   session) in the sandbox's file system view, so a `file://` URL sees
//!   only what a build sees;
//! - never to this machine: every host name is resolved here, refused when
//!   any address is loopback, link-local, unspecified or one of the host's
//!   own (unless the operator listed it in `fetch_local_hosts`), and pinned
//!   for curl with `--resolve`; redirects are followed here, one checked
//!   hop at a time, and FTP's passive address is ignored;
//! - at most the expected size (plus a little, so a wrong answer is
//!   reported with its digest): `RLIMIT_FSIZE` stops a server that sends
//!   more.
//!
//! Messages use the framework's `===> cat/port: …` form, which
//! [`crate::fetch::failure`] reads back.

use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::confine::Confinement;
use crate::fetch::distinfo::{self, Expected, Measured};
use crate::fetch::lock::DistfileLock;

/// Where the distfiles are inside the sandbox.
pub const DISTFILES: &str = "/distfiles";
/// Redirect hops followed for one URL.
const MAX_REDIRECTS: usize = 10;
/// Bytes a download may run past the expected size, so that a small wrong
/// answer (an error page) is still reported with its size and digest.
const SIZE_SLACK: u64 = 64 << 10;
/// Largest `fetch-list` output read.
pub const MAX_LIST: u64 = 1 << 20;

/// One distfile of a fetch list: its key, what distinfo expects (`None`:
/// no complete entry, so it is refused) and the framework's URLs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub key: String,
    pub expected: Option<Expected>,
    pub urls: Vec<String>,
}

impl Wanted {
    fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

/// `base` (a `distfile_mirrors` entry) with `key` appended, as pkgsrc's and
/// FreeBSD's MASTER_SITE_OVERRIDE do: `DIST_SUBDIR/` included.
pub fn mirror_url(base: &str, key: &str) -> String {
    format!("{}/{key}", base.trim_end_matches('/'))
}

/// The mirrors' URLs for `wanted`, then the framework's unless `upstream`
/// is off.
fn sources(wanted: &Wanted, mirrors: &[String], upstream: bool) -> Vec<String> {
    let mirrored = mirrors.iter().map(|base| mirror_url(base, &wanted.key));
    mirrored.chain(wanted.urls.iter().filter(|_| upstream).cloned()).collect()
}

/// Checks a `distfile_mirrors` entry: an http, https, ftp or file URL with
/// a host (file: a path).
pub fn check_mirror(base: &str) -> Result<()> {
    let url = Url::parse(base)?;
    if url.scheme == "file" && !base["file://".len()..].starts_with('/') {
        bail!("{base:?}: a file URL needs an absolute path (file:///...)");
    }
    if base.contains(['?', '#']) || base.contains(char::is_whitespace) {
        bail!("{base:?}: a mirror is a base URL (no query, fragment or white space)");
    }
    Ok(())
}

/// A distinfo key is a relative path of plain names, never leaving the
/// distfiles directory and never naming its lock or partial files.
pub fn check_key(key: &str) -> Result<()> {
    let path = Path::new(key);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)))
        && !key.contains(|c: char| c.is_control())
        && !key.starts_with('.')
        && !key.ends_with(".part")
        && !key.split('/').any(|part| part.is_empty() || part.starts_with('.'));
    if !plain || key.is_empty() {
        bail!("distfile key {key:?} is not a plain relative path");
    }
    Ok(())
}

/// What the fetch phase needs from the sandbox.
pub struct Fetcher<'a> {
    /// `cat/port`, for the messages.
    pub port_dir: &'a str,
    pub confinement: &'a Confinement,
    pub local_hosts: &'a [String],
    /// `distfile_mirrors`: tried first for every file.
    pub mirrors: &'a [String],
    /// `fetch_upstream`: false tries the mirrors only.
    pub upstream: bool,
}

impl Fetcher<'_> {
    /// Downloads every missing file of `wanted`; all are tried, the first
    /// error is returned.
    pub fn fetch_all(&self, wanted: &[Wanted]) -> Result<()> {
        let mut failed = None;
        for file in wanted {
            if let Err(e) = self.fetch_one(file) {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn err(&self, message: &str) {
        eprintln!("===> {}: {message}", self.port_dir);
    }

    fn fetch_one(&self, wanted: &Wanted) -> Result<()> {
        let target = Path::new(DISTFILES).join(&wanted.key);
        if present(&target) {
            return Ok(());
        }
        let Some(expected) = &wanted.expected else {
            let why =
                format!("no size and digest in distinfo for {}: portsynth keeps only verified distfiles", wanted.key);
            self.err(&why);
            bail!(why);
        };
        let dir = target.parent().expect("a key has a file name");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = match DistfileLock::try_existing(Path::new(DISTFILES), &wanted.key)? {
            crate::fetch::lock::TryLock::Held(lock) => lock,
            crate::fetch::lock::TryLock::NoLockFile => DistfileLock::acquire(Path::new(DISTFILES), &wanted.key)?,
            crate::fetch::lock::TryLock::Busy => {
                let path = crate::fetch::lock::lock_path(Path::new(DISTFILES), &wanted.key);
                println!("===> Waiting for {}: another fetch holds {}", wanted.key, path.display());
                DistfileLock::acquire(Path::new(DISTFILES), &wanted.key)?
            }
        };
        if present(&target) {
            println!("===> {} was fetched meanwhile by another port", wanted.key);
            return Ok(());
        }
        let urls = sources(wanted, self.mirrors, self.upstream);
        if urls.is_empty() {
            let why = match self.upstream {
                true => format!("{} is missing and MASTER_SITES is empty", wanted.file_name()),
                false => format!(
                    "{} is missing and fetch_upstream = false with no distfile_mirrors: there is nowhere to fetch it from",
                    wanted.file_name()
                ),
            };
            self.err(&why);
            bail!(why);
        }
        let part = PathBuf::from(format!("{}.part", target.display()));
        for url in &urls {
            println!("===> Fetching {url}");
            if let Err(e) = self.download(url, &part, expected.size) {
                let _ = std::fs::remove_file(&part);
                self.err(&format!("fetch of {url} failed: {e:#}"));
                continue;
            }
            let actual = measure(&part, expected)?;
            let differences = expected.differences(&actual);
            if !differences.is_empty() {
                let _ = std::fs::remove_file(&part);
                let what = differences.join(", ");
                self.err(&format!("checksum mismatch for {} from {url} ({what} differ)", wanted.file_name()));
                eprintln!("     expected: {}", expected.describe());
                eprintln!("     actual:   {}", actual.describe());
                continue;
            }
            std::fs::rename(&part, &target).with_context(|| format!("cannot rename {}", part.display()))?;
            drop(lock);
            return Ok(());
        }
        let why = format!("could not fetch {} from any of: {}", wanted.file_name(), urls.join(" "));
        self.err(&why);
        bail!(why)
    }

    /// One URL into `part`, following checked redirects.
    fn download(&self, url: &str, part: &Path, size: u64) -> Result<()> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let pin = self.check_url(&url)?;
            match self.curl(&url, pin.as_deref(), part, size)? {
                Answer::Done => return Ok(()),
                Answer::Redirect(next) => {
                    println!("===> {url} redirects to {next}");
                    url = next;
                }
            }
        }
        bail!("more than {MAX_REDIRECTS} redirects")
    }

    /// Refuses URLs that reach this machine; returns curl's `--resolve` pin.
    fn check_url(&self, url: &str) -> Result<Option<String>> {
        let parsed = Url::parse(url)?;
        if parsed.scheme == "file" {
            return Ok(None);
        }
        let allowed = self.local_hosts.iter().any(|h| h.eq_ignore_ascii_case(&parsed.host));
        let addresses: Vec<IpAddr> = match parsed.literal() {
            Some(ip) => vec![ip],
            None => (parsed.host.as_str(), parsed.port)
                .to_socket_addrs()
                .with_context(|| format!("cannot resolve {}", parsed.host))?
                .map(|a| a.ip())
                .collect(),
        };
        let own = own_addresses();
        if let Some(local) = addresses.iter().find(|ip| !allowed && is_local(ip, &own)) {
            bail!(
                "refused: {} is this machine ({local}); only hosts listed in fetch_local_hosts may be local",
                parsed.host
            );
        }
        let first = addresses.first().with_context(|| format!("{} has no address", parsed.host))?;
        Ok(parsed.literal().is_none().then(|| parsed.pin(first)))
    }

    fn curl(&self, url: &str, pin: Option<&str>, part: &Path, size: u64) -> Result<Answer> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(part)
            .with_context(|| format!("cannot create {}", part.display()))?;
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--fail", "--globoff", "--noproxy", "*"])
            .args(["--proto", "=http,https,ftp,file", "--max-redirs", "0", "--ftp-skip-pasv-ip"])
            .args(["--connect-timeout", "60", "--max-filesize", &(size + SIZE_SLACK).to_string()])
            .args(["--output", "-", "--write-out", "%{stderr}portsynth-result %{http_code} %{redirect_url}\\n"]);
        if let Some(pin) = pin {
            command.args(["--resolve", pin]);
        }
        command
            .arg("--")
            .arg(url)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/tmp")
            .current_dir("/tmp")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::piped());
        let confinement = self.confinement.clone();
        let limit = libc::rlimit { rlim_cur: size + SIZE_SLACK, rlim_max: size + SIZE_SLACK };
        // SAFETY: enter() and setrlimit are plain system calls.
        unsafe {
            command.pre_exec(move || {
                confinement.enter()?;
                libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
                Ok(())
            });
        }
        let mut child = command.spawn().context("cannot start curl")?;
        let mut stderr = String::new();
        child.stderr.take().expect("piped").take(64 << 10).read_to_string(&mut stderr).ok();
        let status = child.wait()?;
        let (messages, result): (Vec<&str>, Vec<&str>) =
            stderr.lines().partition(|l| !l.starts_with("portsynth-result "));
        for line in &messages {
            eprintln!("{line}");
        }
        if status.code() == Some(63) || status.signal() == Some(libc::SIGXFSZ) {
            bail!("the file is larger than its SIZE {size} in distinfo (stopped after {} bytes)", size + SIZE_SLACK);
        }
        if !status.success() {
            let why = messages
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or(format!("curl {status}"), |l| l.to_string());
            bail!(why);
        }
        let mut answer = result.last().map(|l| l.split_whitespace().skip(1)).into_iter().flatten();
        let code: u32 = answer.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        match answer.next() {
            Some(next) if (300..400).contains(&code) => Ok(Answer::Redirect(next.to_string())),
            _ if (300..400).contains(&code) => bail!("HTTP {code} without a location"),
            _ => Ok(Answer::Done),
        }
    }
}

enum Answer {
    Done,
    Redirect(String),
}

fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// Size and the digests `expected` lists of a file we wrote (never follows
/// a link), in one read.
fn measure(path: &Path, expected: &Expected) -> Result<Measured> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    distinfo::measure(&mut file, &expected.algorithms()).with_context(|| format!("cannot read {}", path.display()))
}

/// The parts of a URL the address check needs.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    port: u16,
}

impl Url {
    fn parse(url: &str) -> Result<Url> {
        let (scheme, rest) = url.split_once("://").with_context(|| format!("{url:?} is not a URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            "ftp" => 21,
            "file" => return Ok(Url { scheme, host: String::new(), port: 0 }),
            other => bail!("{url:?}: scheme {other} is not fetched (http, https, ftp, file)"),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').with_context(|| format!("{url:?}: bad IPv6 host"))?;
                (host.to_string(), after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            },
        };
        if host.is_empty() {
            bail!("{url:?} has no host");
        }
        let port = match port {
            Some(p) => p.parse().with_context(|| format!("{url:?}: bad port {p:?}"))?,
            None => default_port,
        };
        Ok(Url { scheme, host: host.to_ascii_lowercase(), port })
    }

    fn literal(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// curl's `--resolve` entry: this host and port at exactly `address`.
    fn pin(&self, address: &IpAddr) -> String {
        let address = match address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        format!("{}:{}:{address}", self.host, self.port)
    }
}

/// Addresses of this machine's interfaces.
fn own_addresses() -> Vec<IpAddr> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else { return vec![] };
    addresses
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

/// An address on or of this machine: loopback, unspecified, link-local,
/// or one of its interfaces' (IPv4-mapped IPv6 addresses included).
fn is_local(ip: &IpAddr, own: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
        v4 => *v4,
    };
    let special = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    special || own.contains(&ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_relative_paths() {
        for good in ["x-1.tgz", "sub/x-1.tgz", "a/b/c (1).tgz"] {
            check_key(good).unwrap();
        }
        for bad in ["../etc/passwd", "/etc/passwd", ".locks/x", "a/../b", "x.part", "", "a//b", "a/.b", "a\nb"] {
            let err = format!("{:#}", check_key(bad).unwrap_err());
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn mirrors_come_first_with_the_key_appended_and_upstream_can_be_left_out() {
        let wanted = Wanted { key: "sub/x-1.tgz".into(), expected: None, urls: vec!["http://up/x-1.tgz".into()] };
        let mirrors = ["http://m1/distfiles".to_string(), "file:///srv/m2/".to_string()];
        assert_eq!(
            sources(&wanted, &mirrors, true),
            ["http://m1/distfiles/sub/x-1.tgz", "file:///srv/m2/sub/x-1.tgz", "http://up/x-1.tgz"]
        );
        assert_eq!(
            sources(&wanted, &mirrors, false),
            ["http://m1/distfiles/sub/x-1.tgz", "file:///srv/m2/sub/x-1.tgz"]
        );
        assert_eq!(sources(&wanted, &[], true), ["http://up/x-1.tgz"]);
        for good in ["http://h/", "https://h:8443/d", "ftp://h/pub", "file:///srv/d"] {
            check_mirror(good).unwrap();
        }
        for bad in ["h/d", "gopher://h/", "http:///d", "http://h/?x", "file://relative/d", "http://h/a b"] {
            assert!(check_mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_parse_to_scheme_host_and_port() {
        let url = |s| Url::parse(s).unwrap();
        assert_eq!(url("http://Example.org/a"), Url { scheme: "http".into(), host: "example.org".into(), port: 80 });
        assert_eq!(url("https://u:p@h:8443/x?y").port, 8443);
        assert_eq!(url("ftp://[::1]:2121/x").host, "::1");
        assert_eq!(url("ftp://[::1]/x").port, 21);
        assert_eq!(url("file:///xports/Mirror/a").scheme, "file");
        assert!(Url::parse("gopher://h/").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("nothing").is_err());
        assert_eq!(url("http://h:81/").pin(&"::1".parse().unwrap()), "h:81:[::1]");
    }

    #[test]
    fn local_addresses_are_recognised() {
        let own: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap()];
        for local in [
            "127.0.0.1",
            "127.8.9.1",
            "0.0.0.0",
            "169.254.1.1",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "192.0.2.7",
        ] {
            assert!(is_local(&local.parse().unwrap(), &own), "{local}");
        }
        for outside in ["192.0.2.8", "10.0.0.1", "2001:db8::1", "8.8.8.8"] {
            assert!(!is_local(&outside.parse().unwrap(), &own), "{outside}");
        }
    }
}
