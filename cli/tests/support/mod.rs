//! What the command line's tests share: running `intermission`, a fleet of
//! nginx, and small helpers.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use crate::common::*;
use serde_json::Value;

pub fn intermission(args: &[&str]) -> Output {
    intermission_with_env(args, &[])
}

pub fn intermission_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_intermission"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running intermission");
    eprintln!(
        "intermission {args:?}: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_intermission"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting intermission")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one JSON document of `--json`, parsed.
pub fn json(output: &Output) -> Value {
    let text = stdout(output);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `count` nginx, each the shop in front of its own upstream.
pub struct Fleet {
    pub shops: Vec<(Nginx, Upstream)>,
}

impl Fleet {
    pub fn start(count: usize) -> Fleet {
        Fleet {
            shops: (0..count).map(|_| start_shop(1, "")).collect(),
        }
    }

    pub fn targets(&self) -> Vec<String> {
        self.shops
            .iter()
            .map(|(nginx, _)| format!("http://127.0.0.1:{}{CONTROL}", nginx.port()))
            .collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.shops.iter().map(|(nginx, _)| nginx.port()).collect()
    }

    pub fn assert_all(&self, status: &str, what: &str) {
        for port in self.ports() {
            assert_status(port, "", status);
        }
        eprintln!("all {what}");
    }

    /// Waits until every target answers that it is paused (`run` pauses
    /// them in the background).
    pub fn wait_all_paused(&self) {
        wait_until(BOUND, "every target to be paused", || {
            self.ports()
                .iter()
                .all(|&port| control(port, "status").text() == PAUSED)
        });
    }

    pub fn stop(self) {
        for (nginx, _) in self.shops {
            nginx.stop();
        }
    }
}

/// A port with nothing listening on it.
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn with(args: &[&str], targets: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string())
        .chain(targets.iter().cloned())
        .collect()
}

pub fn run_with(args: &[String]) -> Output {
    intermission(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("intermission-cli-{name}-{}", std::process::id()))
}
