//! Why a fetch attempt failed, in the framework's own words.
//!
//! The sandbox only knows that `bmake fetch` exited with status 1; the
//! reason (which URL, what the server said, which digests differed) is in
//! the port's log, written by `Mk/Scripts/fetch.sh` and `checksum.sh` as
//! `===> cat/port: message` lines, a checksum mismatch followed by its
//! `expected:` and `actual:` lines. Reading them back puts the reason into
//! the report, the failure list and the JSON events, instead of a bare
//! exit status.

/// The problems reported by the framework in one attempt's log, each on
/// one line; empty when it reported none.
pub fn problems(log: &str, port_dir: &str) -> Vec<String> {
    let prefix = format!("===> {port_dir}: ");
    let mut found: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some(message) = line.strip_prefix(&prefix) {
            if !message.starts_with("warning:") {
                found.push(message.trim_end().to_string());
            }
            continue;
        }
        let detail = line.trim_start();
        let continues = detail.starts_with("expected:") || detail.starts_with("actual:");
        if let (true, Some(last)) = (continues, found.last_mut()) {
            let separator = if detail.starts_with("expected:") { ": " } else { ", " };
            last.push_str(separator);
            last.push_str(&detail.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    let specific = found.iter().any(|p| !p.starts_with("could not fetch "));
    let mut problems: Vec<String> = Vec::new();
    for problem in found {
        if (specific && problem.starts_with("could not fetch ")) || problems.contains(&problem) {
            continue;
        }
        problems.push(problem);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_errors_carry_the_url_and_the_server_answer() {
        let log = "Origin: misc/a\n===> Fetching http://127.0.0.1:1/a.tgz\n\
            curl: (22) The requested URL returned error: 503\n\
            ===> misc/a: fetch of http://127.0.0.1:1/a.tgz failed: curl: (22) The requested URL returned error: 503\n\
            ===> misc/a: could not fetch a.tgz from any of: http://127.0.0.1:1/\n\
            ===> misc/a: warning: no distinfo file (/x/distinfo)\n\
            ===> misc/other: fetch of elsewhere failed\n";
        assert_eq!(
            problems(log, "misc/a"),
            ["fetch of http://127.0.0.1:1/a.tgz failed: curl: (22) The requested URL returned error: 503"]
        );
    }

    #[test]
    fn checksum_mismatches_carry_both_sizes_and_digests() {
        let log = "===> misc/a: checksum mismatch for a.tgz from http://h/a.tgz\n\
            \x20    expected: SIZE 10 SHA256 aaaa\n\
            \x20    actual:   SIZE 12 SHA256 bbbb\n\
            ===> misc/a: could not fetch a.tgz from any of: http://h/\n";
        assert_eq!(
            problems(log, "misc/a"),
            ["checksum mismatch for a.tgz from http://h/a.tgz: expected: SIZE 10 SHA256 aaaa, actual: SIZE 12 SHA256 bbbb"]
        );
    }

    #[test]
    fn the_summary_line_stays_when_nothing_more_specific_was_said() {
        let log = "===> misc/a: could not fetch a.tgz from any of: ftp://x/\n";
        assert_eq!(problems(log, "misc/a"), ["could not fetch a.tgz from any of: ftp://x/"]);
        assert!(problems("all fine\n", "misc/a").is_empty());
    }
}
