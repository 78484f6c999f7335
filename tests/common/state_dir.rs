//! A directory for `intermission_state_file`, shared by the nginx processes
//! of one test.

use std::fs;
use std::path::PathBuf;

/// A directory for one test's state file, outside any nginx prefix (each
/// nginx of the test has its own), removed at the end.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new(test: &str) -> StateDir {
        let dir = std::env::temp_dir()
            .join("intermission-tests")
            .join(format!("state-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        StateDir(dir)
    }

    pub fn file(&self) -> PathBuf {
        self.0.join("state")
    }

    pub fn text(&self) -> String {
        fs::read_to_string(self.file()).unwrap_or_default()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
