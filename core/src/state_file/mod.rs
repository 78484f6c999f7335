//! The state file (`intermission_state_file`): the apps paused or stopped,
//! written at each change so that a restarted nginx comes back paused. This
//! file is its format, written and read; `restore` is what it makes of the
//! app table.
//!
//! A text file, one app a line, every field named, times as wall-clock
//! milliseconds since the Unix epoch (the zone keeps nginx's monotonic clock,
//! which restarts with the machine):
//!
//! ```text
//! intermission-state 1
//! saved 1796040000000 generation 7 writer 5f0c2a9be17d4403
//! paused since=1796039990000 deadline=1796040600000 name=shop
//! stopped since=1796039000000 deadline=none name=caf%C3%A9%20%E2%98%95
//! end apps=2
//! ```
//!
//! The generation counts the writes (each zone keeps the last it wrote or
//! applied), and the writer is the id of the zone that wrote it: nginx
//! binaries that run side by side during a binary upgrade, each with its own
//! zone, take from the file a state of a higher generation than their own
//! (writes follow each other and count past the file's).
//!
//! Names are percent-encoded (every byte outside `!`..`~`, and `%`), so any
//! name fits on one line. The `end` line, with the count, tells a whole file
//! from a cut one. The reader takes nothing on trust: any line it does not
//! understand makes the whole file unreadable, with the line's number and the
//! reason, and it never panics (property-tested and fuzzed).

use std::fmt::{self, Write as _};

use crate::ids::{Millis, MAX_APP_NAME_LEN};

mod restore;
pub use restore::{Applied, Restore, LONGEST_RESTORED_MS};

/// The first line of every state file, with the format's version.
const MAGIC: &str = "intermission-state 1";

/// What the file says of one app: paused or stopped since a time, to end by
/// itself at a deadline or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedApp {
    pub name: Vec<u8>,
    pub stopped: bool,
    /// Wall clock, ms since the Unix epoch.
    pub since: Millis,
    pub deadline: Option<Millis>,
}

/// A whole state file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateFile {
    /// When it was written (wall clock, ms).
    pub saved: Millis,
    /// The write's number: one more than the state it replaced.
    pub generation: u64,
    /// The id of the zone whose state it is (`TableHeader::zone_id`).
    pub writer: u64,
    pub apps: Vec<SavedApp>,
}

/// Why a state file cannot be read: the line (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStateFile {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadStateFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl StateFile {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(64 + self.apps.len() * 80);
        text.push_str(MAGIC);
        text.push('\n');
        let _ = writeln!(
            text,
            "saved {} generation {} writer {:016x}",
            self.saved, self.generation, self.writer
        );
        for app in &self.apps {
            let _ = write!(
                text,
                "{} since={} deadline=",
                if app.stopped { "stopped" } else { "paused" },
                app.since
            );
            match app.deadline {
                Some(deadline) => {
                    let _ = write!(text, "{deadline}");
                }
                None => text.push_str("none"),
            }
            text.push_str(" name=");
            push_encoded(&mut text, &app.name);
            text.push('\n');
        }
        let _ = writeln!(text, "end apps={}", self.apps.len());
        text
    }

    /// Reads a state file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<StateFile, BadStateFile> {
        let text = std::str::from_utf8(bytes).map_err(|e| BadStateFile {
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            reason: "not text (invalid UTF-8)".into(),
        })?;
        let mut lines = text
            .split_terminator('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l));
        let (saved, generation, writer) = parse_head(&mut lines)?;

        let mut apps: Vec<SavedApp> = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut last = 2;
        for (n, line) in lines.by_ref() {
            last = n;
            if let Some(count) = line.strip_prefix("end apps=") {
                let count = number(count)
                    .ok_or_else(|| bad(n, format!("bad count in \"{}\"", clip(line))))?;
                if count != apps.len() as u64 {
                    return Err(bad(
                        n,
                        format!("says {count} apps, the file has {}", apps.len()),
                    ));
                }
                if let Some((n, _)) = lines.next() {
                    return Err(bad(n, "text after the \"end\" line".into()));
                }
                return Ok(StateFile {
                    saved,
                    generation,
                    writer,
                    apps,
                });
            }
            let app = parse_app(line).map_err(|reason| bad(n, reason))?;
            if !names.insert(app.name.clone()) {
                return Err(bad(
                    n,
                    format!("app \"{}\" twice", clip(&encoded(&app.name))),
                ));
            }
            apps.push(app);
        }
        Err(bad(last + 1, "cut short: no \"end\" line".into()))
    }
}

fn bad(line: usize, reason: String) -> BadStateFile {
    BadStateFile { line, reason }
}

/// The first two lines: the format's, then `saved MS generation N writer
/// ID`.
fn parse_head<'t>(
    lines: &mut impl Iterator<Item = (usize, &'t str)>,
) -> Result<(Millis, u64, u64), BadStateFile> {
    match lines.next() {
        Some((_, MAGIC)) => {}
        Some((n, first)) if first.starts_with("intermission-state ") => {
            return Err(bad(
                n,
                format!(
                    "format \"{}\" is not one this module reads (\"{MAGIC}\")",
                    clip(first)
                ),
            ));
        }
        Some((n, _)) => {
            return Err(bad(
                n,
                format!("not a state file: the first line is not \"{MAGIC}\""),
            ))
        }
        None => return Err(bad(1, "empty".into())),
    }
    let Some((n, line)) = lines.next() else {
        return Err(bad(2, "cut short: no \"saved\" line".into()));
    };
    let parsed = line.strip_prefix("saved ").and_then(|rest| {
        let (ms, rest) = rest.split_once(" generation ")?;
        let (generation, writer) = rest.split_once(" writer ")?;
        Some((time(ms)?, generation_number(generation)?, zone_id(writer)?))
    });
    parsed.ok_or_else(|| {
        bad(
            n,
            format!(
                "expected \"saved MS generation N writer ID\": \"{}\"",
                clip(line)
            ),
        )
    })
}

/// `paused|stopped since=MS deadline=MS|none name=ENCODED`
fn parse_app(line: &str) -> Result<SavedApp, String> {
    let mut fields = line.split(' ');
    let stopped = match fields.next() {
        Some("paused") => false,
        Some("stopped") => true,
        _ => {
            return Err(format!(
                "expected \"paused\", \"stopped\" or \"end\": \"{}\"",
                clip(line)
            ))
        }
    };
    let mut field = |key: &str| -> Result<&str, String> {
        fields
            .next()
            .and_then(|f| f.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("expected \"{key}=\" in \"{}\"", clip(line)))
    };
    let since = field("since")?;
    let since =
        time(since).ok_or_else(|| format!("\"since\" is not a time in ms: \"{}\"", clip(since)))?;
    let deadline = match field("deadline")? {
        "none" => None,
        ms => Some(time(ms).ok_or_else(|| {
            format!(
                "\"deadline\" is not a time in ms or \"none\": \"{}\"",
                clip(ms)
            )
        })?),
    };
    let name = decode(field("name")?)
        .ok_or_else(|| format!("bad percent-encoding in the name: \"{}\"", clip(line)))?;
    if name.len() > MAX_APP_NAME_LEN {
        return Err(format!(
            "a name of {} bytes, more than the {MAX_APP_NAME_LEN} allowed",
            name.len()
        ));
    }
    if fields.next().is_some() {
        return Err(format!("text after the name: \"{}\"", clip(line)));
    }
    Ok(SavedApp {
        name,
        stopped,
        since,
        deadline,
    })
}

/// The latest time a file may name, in ms since the epoch (the year 5138):
/// far beyond any real one, and small enough that no sum of two overflows.
pub const LATEST_TIME_MS: u64 = 100_000_000_000_000;

/// A time in ms since the epoch, at most `LATEST_TIME_MS`.
fn time(text: &str) -> Option<u64> {
    number(text).filter(|&ms| ms <= LATEST_TIME_MS)
}

/// A generation, at most `i64::MAX`, so that counting on never overflows.
fn generation_number(text: &str) -> Option<u64> {
    number(text).filter(|&n| n <= i64::MAX as u64)
}

/// A zone id: 16 lower-case hex digits, as `render` writes it.
fn zone_id(text: &str) -> Option<u64> {
    if text.len() != 16
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// A decimal number that fits u64, written as `render` writes it: digits
/// only, no leading zero.
fn number(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

fn push_encoded(text: &mut String, name: &[u8]) {
    for &b in name {
        if b.is_ascii_graphic() && b != b'%' {
            text.push(char::from(b));
        } else {
            let _ = write!(text, "%{b:02X}");
        }
    }
}

fn encoded(name: &[u8]) -> String {
    let mut text = String::new();
    push_encoded(&mut text, name);
    text
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // As `push_encoded` writes it: two upper-case hex digits,
                // only for a byte that must be encoded.
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                {
                    return None;
                }
                let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                if byte.is_ascii_graphic() && byte != b'%' {
                    return None;
                }
                name.push(byte);
                i += 3;
            }
            b if b.is_ascii_graphic() => {
                name.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(name)
}

/// At most 60 characters of a line, for an error message.
fn clip(text: &str) -> String {
    let mut clipped: String = text
        .chars()
        .take(60)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 60 {
        clipped.push_str("...");
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &[u8], stopped: bool, deadline: Option<u64>) -> SavedApp {
        SavedApp {
            name: name.to_vec(),
            stopped,
            since: 1_000,
            deadline,
        }
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let file = StateFile {
            saved: 1_796_040_000_000,
            generation: 7,
            writer: 0x5f0c_2a9b_e17d_4403,
            apps: vec![
                app(b"shop", false, Some(1_796_040_600_000)),
                app("café ☕".as_bytes(), true, None),
                app(b"", false, None),
                app(b"a%b c\n\x00\xff", false, Some(5)),
            ],
        };
        let text = file.render();
        assert!(
            text.starts_with(
                "intermission-state 1\nsaved 1796040000000 generation 7 writer 5f0c2a9be17d4403\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("paused since=1000 deadline=1796040600000 name=shop\n"),
            "{text}"
        );
        assert!(
            text.contains("stopped since=1000 deadline=none name=caf%C3%A9%20%E2%98%95\n"),
            "{text}"
        );
        assert!(text.contains("name=a%25b%20c%0A%00%FF\n"), "{text}");
        assert!(text.ends_with("end apps=4\n"), "{text}");
        assert_eq!(StateFile::parse(text.as_bytes()), Ok(file));
    }

    #[test]
    fn a_last_line_without_its_newline_still_reads() {
        let text = "intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\nend apps=0";
        assert_eq!(
            StateFile::parse(text.as_bytes()).map(|f| f.apps.len()),
            Ok(0)
        );
    }

    #[test]
    fn no_app_is_an_empty_list() {
        let file = StateFile {
            saved: 7,
            generation: 0,
            writer: 1,
            apps: vec![],
        };
        assert_eq!(
            file.render(),
            "intermission-state 1\nsaved 7 generation 0 writer 0000000000000001\nend apps=0\n"
        );
        assert_eq!(StateFile::parse(file.render().as_bytes()), Ok(file));
    }

    #[test]
    fn bad_files_name_the_line_and_the_reason() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 1, "empty"),
            (b"hello\n", 1, "not a state file"),
            (b"intermission-state 2\n", 1, "not one this module reads"),
            (b"intermission-state 1\n", 2, "no \"saved\" line"),
            (b"intermission-state 1\nsaved x generation 1 writer 0000000000000001\n", 2, "expected \"saved MS generation N writer ID\""),
            (b"intermission-state 1\nsaved 1 generation 1\n", 2, "expected \"saved"),
            (b"intermission-state 1\nsaved 1 generation 9223372036854775808 writer 0000000000000001\n", 2, "expected \"saved"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 00000000000000AB\n", 2, "expected \"saved"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=100000000000001 name=a\nend apps=1\n", 3, "\"deadline\""),
            (b"intermission-state 1\nsaved 1\n", 2, "expected \"saved"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\n", 3, "no \"end\" line"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=none name=a\n", 4, "no \"end\" line"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\nend apps=1\n", 3, "says 1 apps, the file has 0"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\nend apps=0\nmore\n", 4, "after the \"end\""),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\nresumed since=1 deadline=none name=a\nend apps=1\n", 3, "expected \"paused\""),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=-1 deadline=none name=a\nend apps=1\n", 3, "\"since\""),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=soon name=a\nend apps=1\n", 3, "\"deadline\""),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=none name=a%G0\nend apps=1\n", 3, "percent-encoding"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=none name=a%2\nend apps=1\n", 3, "percent-encoding"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=none name=a extra\nend apps=1\n", 3, "after the name"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused deadline=none since=1 name=a\nend apps=1\n", 3, "\"since=\""),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=none name=a\npaused since=2 deadline=none name=a\nend apps=2\n", 4, "twice"),
            (b"intermission-state 1\nsaved 99999999999999999999 generation 1 writer 0000000000000001\nend apps=0\n", 2, "expected \"saved"),
            (b"intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=1 deadline=none name=\xff\nend apps=1\n", 3, "UTF-8"),
        ];
        for (bytes, line, reason) in cases {
            let err = StateFile::parse(bytes).expect_err(&String::from_utf8_lossy(bytes));
            assert_eq!(
                err.line,
                *line,
                "{err} for {:?}",
                String::from_utf8_lossy(bytes)
            );
            assert!(
                err.reason.contains(reason),
                "{err} for {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_name_longer_than_an_app_name_may_be_is_refused() {
        let long = vec![b'a'; MAX_APP_NAME_LEN + 1];
        let text = StateFile {
            saved: 1,
            generation: 1,
            writer: 1,
            apps: vec![app(&long, false, None)],
        }
        .render();
        let err = StateFile::parse(text.as_bytes()).unwrap_err();
        assert!(err.reason.contains("allowed"), "{err}");
    }
}
