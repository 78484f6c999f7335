//! What `nginx -t` warns about in a configuration that nginx accepts but
//! that cannot do what its author meant: a `$intermission_*` variable the
//! module never reads (a typo in a `set` is otherwise silently ignored), and
//! an `intermission_max_pause` that no control location gets.

use std::fmt;

/// The variables a configuration sets for the module to read.
pub const MAX_TIME: &str = "intermission_max_time";
pub const ON_TIMEOUT: &str = "intermission_on_timeout";
pub const HEALTH_CHECK_PATH: &str = "intermission_health_check_path";
pub const PRIVILEGED_USER_AGENT: &str = "intermission_privileged_user_agent";
pub const BYPASS: &str = "intermission_bypass";

/// The variables the module reports, for access logs and upstream headers.
pub const OUTCOME: &str = "intermission_outcome";
pub const WAIT: &str = "intermission_wait";
pub const TICKET: &str = "intermission_ticket";

/// Declared only so that configurations written for the old Lua script stay
/// valid: nothing reads it.
pub const INTERVAL: &str = "intermission_interval";

/// What the module reads, in the order the warning lists them.
pub const READ: [&str; 5] = [
    MAX_TIME,
    ON_TIMEOUT,
    HEALTH_CHECK_PATH,
    PRIVILEGED_USER_AGENT,
    BYPASS,
];

const KNOWN: [&str; 9] = [
    MAX_TIME,
    ON_TIMEOUT,
    HEALTH_CHECK_PATH,
    PRIVILEGED_USER_AGENT,
    BYPASS,
    OUTCOME,
    WAIT,
    TICKET,
    INTERVAL,
];

/// The prefix that marks a variable as meant for the module.
const PREFIX: &[u8] = b"intermission_";

/// A variable that a configuration defines (`set`, `map`, `geo`...) under
/// the module's prefix, but that the module does not know.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownVariable<'a> {
    pub name: &'a [u8],
    /// The known name it is most likely a typo of, if any is close.
    pub nearest: Option<&'static str>,
}

/// `name` (as nginx keeps it: lowercase, without `$`), if it starts with
/// `intermission_` and the module does not know it.
pub fn unknown_variable(name: &[u8]) -> Option<UnknownVariable<'_>> {
    if !name.starts_with(PREFIX) || KNOWN.iter().any(|known| known.as_bytes() == name) {
        return None;
    }
    let nearest = KNOWN
        .iter()
        .map(|known| (edit_distance(name, known.as_bytes()), *known))
        .min()
        .filter(|&(distance, _)| distance <= 3)
        .map(|(_, known)| known);
    Some(UnknownVariable { name, nearest })
}

impl fmt::Display for UnknownVariable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown variable \"${}\"",
            crate::settings::LogSafe(self.name)
        )?;
        if let Some(nearest) = self.nearest {
            write!(f, " (did you mean \"${nearest}\"?)")?;
        }
        f.write_str(": intermission reads ")?;
        for (i, name) in READ.iter().enumerate() {
            let separator = match i {
                0 => "",
                i if i == READ.len() - 1 => " and ",
                _ => ", ",
            };
            write!(f, "{separator}${name}")?;
        }
        write!(f, ", and sets ${OUTCOME}, ${WAIT} and ${TICKET}")
    }
}

/// The Levenshtein distance between two names (short: the quadratic table
/// is a few hundred cells).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(x != y);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Where a directive was written: its file and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site<'a> {
    pub file: &'a [u8],
    pub line: usize,
}

/// The warning for an `intermission_max_pause` at `site` that no location
/// with `intermission_control` gets.
pub struct UnusedMaxPause<'a>(pub Site<'a>);

impl fmt::Display for UnusedMaxPause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"intermission_max_pause\" in {}:{} has no effect: no location with \
             \"intermission_control\" is in its scope (it limits the pauses enabled \
             through a control location)",
            crate::settings::LogSafe(self.0.file),
            self.0.line
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_foreign_names_are_not_reported() {
        for name in KNOWN {
            assert_eq!(unknown_variable(name.as_bytes()), None, "{name}");
        }
        for foreign in [&b"app_name"[..], b"intermission", b"intermissionx", b"host"] {
            assert_eq!(unknown_variable(foreign), None);
        }
        // The module's own storage has a space, not the prefix.
        assert_eq!(unknown_variable(b"intermission counted in flight"), None);
    }

    #[test]
    fn a_typo_names_the_nearest_known_variable() {
        let typo = unknown_variable(b"intermission_max_tme").expect("unknown");
        assert_eq!(typo.nearest, Some(MAX_TIME));
        assert_eq!(
            typo.to_string(),
            "unknown variable \"$intermission_max_tme\" (did you mean \
             \"$intermission_max_time\"?): intermission reads $intermission_max_time, \
             $intermission_on_timeout, $intermission_health_check_path, \
             $intermission_privileged_user_agent and $intermission_bypass, and sets \
             $intermission_outcome, $intermission_wait and $intermission_ticket"
        );
        assert_eq!(
            unknown_variable(b"intermission_bypas").unwrap().nearest,
            Some(BYPASS)
        );
        assert_eq!(
            unknown_variable(b"intermission_privileged_useragent")
                .unwrap()
                .nearest,
            Some(PRIVILEGED_USER_AGENT)
        );
    }

    #[test]
    fn a_name_far_from_any_known_one_is_reported_without_a_guess() {
        let unknown = unknown_variable(b"intermission_colour").expect("unknown");
        assert_eq!(unknown.nearest, None);
        assert!(unknown
            .to_string()
            .starts_with("unknown variable \"$intermission_colour\": intermission reads"));
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"abc", b"abc"), 0);
        assert_eq!(edit_distance(b"max_tme", b"max_time"), 1);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }

    #[test]
    fn an_unused_max_pause_names_its_place() {
        let warning = UnusedMaxPause(Site {
            file: b"/etc/nginx/sites-enabled/shop",
            line: 12,
        })
        .to_string();
        assert!(
            warning.starts_with(
                "\"intermission_max_pause\" in /etc/nginx/sites-enabled/shop:12 has no effect"
            ),
            "{warning}"
        );
    }
}
