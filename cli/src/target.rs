//! Targets: the URL of a control location (a query string on it, such as
//! `?app=shop`, is kept after the action), the `Host` to send, and the
//! credentials to use, which are never shown: a target is always displayed
//! with its password replaced by `***`. Credentials come from the URL, a
//! credentials file (`--credentials`), or `INTERMISSION_USER` and
//! `INTERMISSION_PASSWORD`; the last two are not seen in the process list.

use std::path::Path;

use base64::Engine as _;

/// One control endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `scheme://authority/path` without credentials, query or trailing `/`.
    url: String,
    /// The query string of the target (`app=shop`), without `?`; empty if
    /// none. It goes after the action: `.../enable?app=shop&ttl=5m`.
    query: String,
    /// The URL with `user:***@` where it had credentials, and its query.
    shown: String,
    pub host: Option<String>,
    credentials: Option<Credentials>,
    /// The URL itself carried a password (which the process list shows).
    password_in_url: bool,
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: *** }}", self.user)
    }
}

/// Credentials for targets whose URL has none (or a user only): from a
/// credentials file, else `INTERMISSION_USER` and `INTERMISSION_PASSWORD`.
/// And what every target's query gets (`--app`).
#[derive(Debug, Default, Clone)]
pub struct SharedCredentials {
    pub user: Option<String>,
    pub password: Option<String>,
    /// `--app NAME`: `app=NAME` added to every target's query.
    pub app: Option<String>,
}

impl SharedCredentials {
    pub fn from_env() -> Self {
        SharedCredentials {
            user: std::env::var("INTERMISSION_USER")
                .ok()
                .filter(|u| !u.is_empty()),
            password: std::env::var("INTERMISSION_PASSWORD").ok(),
            app: None,
        }
    }

    /// Reads `USER:PASSWORD` from the first line of a credentials file
    /// (`--credentials FILE`), which wins over the environment. The
    /// password may hold any character but a newline, `:` included.
    pub fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --credentials file \"{}\": {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("");
        let (user, password) = line.split_once(':').ok_or_else(|| {
            format!(
                "--credentials file \"{}\": its first line is not USER:PASSWORD",
                path.display()
            )
        })?;
        self.user = Some(user.to_owned()).filter(|u| !u.is_empty());
        self.password = Some(password.to_owned());
        Ok(())
    }
}

/// Whether a credentials file can be read by others than its owner.
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

impl Target {
    /// `URL` or `URL#HOST` as given on the command line. A `#` in the
    /// credentials (before the `@` of the authority) is refused without
    /// showing them: it must be written `%23`.
    pub fn from_arg(arg: &str, shared: &SharedCredentials) -> Result<Target, String> {
        match arg.split_once('#') {
            Some((url, rest)) if rest.contains('@') && !url.contains('@') => Err(format!(
                "\"{}\": a password with a raw '#' (write it as %23, or give the credentials \
                 with --credentials FILE)",
                redact_guess(arg)
            )),
            Some((url, host)) => Target::new(url, Some(host), shared),
            None => Target::new(arg, None, shared),
        }
    }

    pub fn new(
        url: &str,
        host: Option<&str>,
        shared: &SharedCredentials,
    ) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .ok_or_else(|| {
                format!(
                    "\"{}\" is not an http:// or https:// URL",
                    redact_guess(url)
                )
            })?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, query),
            None => (rest, ""),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(format!("\"{}\" names no host", redact_guess(url)));
        }
        let path = path.trim_end_matches('/');
        let from_url = userinfo.map(|info| match info.split_once(':') {
            Some((user, password)) => (percent_decode(user), Some(percent_decode(password))),
            None => (percent_decode(info), None),
        });
        let password_in_url = matches!(from_url, Some((_, Some(_))));
        let credentials = match from_url {
            Some((user, Some(password))) => Some(Credentials { user, password }),
            Some((user, None)) => shared
                .password
                .clone()
                .map(|password| Credentials { user, password }),
            None => shared.user.clone().map(|user| Credentials {
                user,
                password: shared.password.clone().unwrap_or_default(),
            }),
        };
        let shown_userinfo = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => format!("{info}@"),
            },
            None => String::new(),
        };
        let mut query = query.trim_matches('&').to_owned();
        if let Some(app) = &shared.app {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("app=");
            query.push_str(&percent_encode(app));
        }
        let shown_query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        Ok(Target {
            url: format!("{scheme}://{hostport}{path}"),
            shown: format!("{scheme}://{shown_userinfo}{hostport}{path}{shown_query}"),
            query,
            host: host.filter(|h| !h.is_empty()).map(str::to_owned),
            credentials,
            password_in_url,
        })
    }

    /// Whether the URL as given carried a password: other users of the
    /// machine can read it in the process list while the command runs.
    pub fn password_in_url(&self) -> bool {
        self.password_in_url
    }

    /// The URL of an action of this endpoint (`status`, `enable?ttl=5m`),
    /// with the target's own query first.
    pub fn url_of(&self, action: &str) -> String {
        let (action, args) = action.split_once('?').unwrap_or((action, ""));
        let query: Vec<&str> = [self.query.as_str(), args]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect();
        if query.is_empty() {
            format!("{}/{action}", self.url)
        } else {
            format!("{}/{action}?{}", self.url, query.join("&"))
        }
    }

    /// The URL as shown: never with a password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// As shown, with `#HOST` when one is sent.
    pub fn shown(&self) -> String {
        match &self.host {
            Some(host) => format!("{}#{host}", self.shown),
            None => self.shown.clone(),
        }
    }

    /// The `Authorization` header, with credentials.
    pub fn authorization(&self) -> Option<String> {
        let credentials = self.credentials.as_ref()?;
        let pair = format!("{}:{}", credentials.user, credentials.password);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }

    /// Replaces every password of this target in `text` (an error message
    /// that might quote one).
    pub fn redact(&self, text: &str) -> String {
        match &self.credentials {
            Some(c) if !c.password.is_empty() => text.replace(&c.password, "***"),
            _ => text.to_owned(),
        }
    }
}

/// Reads a `--targets` file: `URL [HOST]` a line; blank lines and lines
/// starting with `#` skipped.
pub fn read_targets_file(path: &Path, shared: &SharedCredentials) -> Result<Vec<Target>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --targets file \"{}\": {e}", path.display()))?;
    parse_targets_file(&text, shared)
        .map_err(|(line, why)| format!("--targets file \"{}\", line {line}: {why}", path.display()))
}

fn parse_targets_file(
    text: &str,
    shared: &SharedCredentials,
) -> Result<Vec<Target>, (usize, String)> {
    let mut targets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(url) = words.next().filter(|w| !w.starts_with('#')) else {
            continue;
        };
        let target = Target::new(url, words.next(), shared).map_err(|why| (number + 1, why))?;
        targets.push(target);
    }
    Ok(targets)
}

/// For a message about a URL that did not parse: anything between `//` and
/// `@` hidden, in case it is a password.
fn redact_guess(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}***{}", &url[..start + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Percent-encodes what a query value cannot hold as it is.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> SharedCredentials {
        SharedCredentials::default()
    }

    #[test]
    fn a_plain_target_with_a_host() {
        let t = Target::from_arg("http://10.0.0.5/_intermission/#shop.test", &none()).unwrap();
        assert_eq!(t.url_of("status"), "http://10.0.0.5/_intermission/status");
        assert_eq!(t.host.as_deref(), Some("shop.test"));
        assert_eq!(t.shown(), "http://10.0.0.5/_intermission#shop.test");
        assert_eq!(t.authorization(), None);
    }

    #[test]
    fn credentials_are_used_and_never_shown() {
        let t = Target::from_arg("https://ops:s3cr%40t@10.0.0.5:8443/_i", &none()).unwrap();
        assert_eq!(t.url_of("enable"), "https://10.0.0.5:8443/_i/enable");
        assert_eq!(t.shown(), "https://ops:***@10.0.0.5:8443/_i");
        // base64("ops:s3cr@t")
        assert_eq!(t.authorization().as_deref(), Some("Basic b3BzOnMzY3JAdA=="));
        assert!(!format!("{t:?}").contains("s3cr"));
        assert_eq!(t.redact("refused s3cr@t"), "refused ***");
    }

    #[test]
    fn shared_credentials_fill_in_what_a_url_lacks() {
        let shared = SharedCredentials {
            user: Some("ops".into()),
            password: Some("pw".into()),
            app: None,
        };
        let no_user = Target::from_arg("http://h/_i", &shared).unwrap();
        assert_eq!(no_user.authorization().as_deref(), Some("Basic b3BzOnB3"));
        assert_eq!(no_user.shown(), "http://h/_i", "nothing to hide in the URL");
        let own_user = Target::from_arg("http://admin@h/_i", &shared).unwrap();
        assert_eq!(
            own_user.authorization().as_deref(),
            Some("Basic YWRtaW46cHc=")
        );
        assert_eq!(own_user.shown(), "http://admin@h/_i");
        let own_password = Target::from_arg("http://a:b@h/_i", &shared).unwrap();
        assert_eq!(own_password.authorization().as_deref(), Some("Basic YTpi"));
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_a_password() {
        let error = Target::from_arg("ftp://u:pw@h/_i", &none()).unwrap_err();
        assert!(
            error.contains("ftp://***@h/_i") && !error.contains("pw"),
            "{error}"
        );
        assert!(Target::from_arg("h/_i", &none()).is_err());
        assert!(Target::from_arg("http:///_i", &none()).is_err());
    }

    #[test]
    fn a_query_goes_after_the_action_and_app_adds_to_it() {
        let t = Target::from_arg("http://h/_intermission?app=shop#shop.test", &none()).unwrap();
        assert_eq!(
            t.url_of("enable?ttl=5m"),
            "http://h/_intermission/enable?app=shop&ttl=5m"
        );
        assert_eq!(t.url_of("status"), "http://h/_intermission/status?app=shop");
        assert_eq!(t.shown(), "http://h/_intermission?app=shop#shop.test");
        let shared = SharedCredentials {
            app: Some("café & co".into()),
            ..none()
        };
        let t = Target::from_arg("http://h/_i/", &shared).unwrap();
        assert_eq!(
            t.url_of("status"),
            "http://h/_i/status?app=caf%C3%A9%20%26%20co"
        );
    }

    #[test]
    fn a_raw_hash_in_a_password_is_refused_without_showing_it() {
        for url in [
            "http://ops:pa#ss@h/_i",
            "http://ops:#x@h/_i#shop.test",
            "http://ops:a#b:c@h:8080/_i",
        ] {
            let error = Target::from_arg(url, &none()).unwrap_err();
            assert!(error.contains("%23"), "{error}");
            assert!(
                !error.contains("pa#") && !error.contains("#x") && !error.contains("a#b"),
                "{error}"
            );
        }
        let t = Target::from_arg("http://ops:pa%23ss@h/_i#shop.test", &none()).unwrap();
        assert_eq!(t.authorization().as_deref(), Some("Basic b3BzOnBhI3Nz"));
        assert!(t.password_in_url());
        assert!(!Target::from_arg("http://h/_i", &none())
            .unwrap()
            .password_in_url());
    }

    #[test]
    fn a_credentials_file_holds_user_and_password() {
        let path = std::env::temp_dir().join(format!("intermission-cred-{}", std::process::id()));
        std::fs::write(&path, "ops:p@ss:w#rd%\n").unwrap();
        let mut shared = none();
        shared.read_file(&path).unwrap();
        let t = Target::from_arg("http://h/_i", &shared).unwrap();
        let pair = base64::engine::general_purpose::STANDARD.encode("ops:p@ss:w#rd%");
        assert_eq!(t.authorization(), Some(format!("Basic {pair}")));
        std::fs::write(&path, "no colon\n").unwrap();
        assert!(shared
            .read_file(&path)
            .unwrap_err()
            .contains("USER:PASSWORD"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_targets_file_skips_comments_and_blanks() {
        let text = "# the shops\n\nhttp://a/_i shop.test\n  http://u:p@b/_i  \n#http://c/_i\n";
        let targets = parse_targets_file(text, &none()).unwrap();
        let shown: Vec<String> = targets.iter().map(Target::shown).collect();
        assert_eq!(shown, ["http://a/_i#shop.test", "http://u:***@b/_i"]);
        assert_eq!(
            parse_targets_file("http://a/_i\nnot-a-url\n", &none())
                .unwrap_err()
                .0,
            2
        );
    }
}
