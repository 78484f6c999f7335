//! What the control endpoint understands of a request path.

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Action {
    Status,
    Enable,
    Disable,
}

/// The action named by the last segment of the request path.
pub fn action_of(uri: &[u8]) -> Option<Action> {
    let last = uri.rsplit(|&b| b == b'/').next()?;
    match last {
        b"status" => Some(Action::Status),
        b"enable" => Some(Action::Enable),
        b"disable" => Some(Action::Disable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_path_segment_picks_the_action() {
        assert_eq!(action_of(b"/_intermission/status"), Some(Action::Status));
        assert_eq!(action_of(b"/_intermission/enable"), Some(Action::Enable));
        assert_eq!(
            action_of(b"/ops/shop/_intermission/disable"),
            Some(Action::Disable)
        );
        assert_eq!(action_of(b"disable"), Some(Action::Disable));
    }

    #[test]
    fn anything_else_is_not_an_action() {
        for uri in [
            &b"/_intermission"[..],
            b"/_intermission/",
            b"/_intermission/enable/",
            b"/_intermission/Enable",
            b"/_intermission/enablex",
            b"",
        ] {
            assert_eq!(action_of(uri), None, "{:?}", String::from_utf8_lossy(uri));
        }
    }
}
