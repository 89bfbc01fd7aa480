//! Spots build output that looks wrong even when the build went on: a
//! command that was not found, a permission refused, a crash, an error make
//! was told to ignore. Such lines go to `05_abnormal_command_output.log`,
//! where an operator finds ports that "succeeded" suspiciously.
//!
//! The scan runs on the output stream as it is logged (one pass, no reread
//! of a log that may be hundreds of megabytes), so it keeps the unfinished
//! last line between reads.

/// Substrings that mark a line as abnormal.
const PATTERNS: [&str; 10] = [
    "command not found",
    // dash: "sh: 1: gmake: not found"
    ": not found",
    "Permission denied",
    "Segmentation fault",
    "core dumped",
    "(ignored)",
    "Read-only file system",
    "No space left on device",
    "Operation not permitted",
    // bmake running a missing program without a shell
    "No such file or directory",
];

/// Lines kept per build; the log has the rest.
const MAX_LINES: usize = 20;
/// Longest line examined; longer ones are cut (a binary blob is not a message).
const MAX_LINE: usize = 4096;

#[derive(Debug, Default)]
pub struct AbnormalOutput {
    pending: Vec<u8>,
    found: Vec<String>,
    more: usize,
}

impl AbnormalOutput {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.end_line();
            } else if self.pending.len() < MAX_LINE {
                self.pending.push(byte);
            }
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        if PATTERNS.iter().any(|p| line.contains(p)) {
            if self.found.len() < MAX_LINES {
                self.found.push(line.trim_end().to_string());
            } else {
                self.more += 1;
            }
        }
        self.pending.clear();
    }

    /// The abnormal lines seen, with a note when some were left out.
    pub fn finish(mut self) -> Vec<String> {
        if !self.pending.is_empty() {
            self.end_line();
        }
        if self.more > 0 {
            self.found.push(format!("… and {} more such line(s) in the log", self.more));
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_suspicious_lines_across_reads() {
        let mut scan = AbnormalOutput::default();
        scan.feed(b"cc -o hello hello.c\nsh: 1: gmake: command not ");
        scan.feed(b"found\n*** Error code 1 (ignored)\nall good\nlast line: Segmentation fault");
        assert_eq!(
            scan.finish(),
            ["sh: 1: gmake: command not found", "*** Error code 1 (ignored)", "last line: Segmentation fault"]
        );
    }

    #[test]
    fn ordinary_output_is_not_abnormal_and_the_list_is_bounded() {
        let mut scan = AbnormalOutput::default();
        scan.feed(b"===> Building for hello-2.1\ncc -O2 -c greet.c\n");
        assert!(scan.finish().is_empty());
        let mut scan = AbnormalOutput::default();
        for _ in 0..25 {
            scan.feed(b"rm: cannot remove 'x': Permission denied\n");
        }
        let found = scan.finish();
        assert_eq!(found.len(), MAX_LINES + 1);
        assert!(found.last().unwrap().contains("5 more"));
    }
}
