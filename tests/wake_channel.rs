//! The wake-up channel between workers: nothing runs while requests are
//! only held (the workers' release passes stay flat: no polling), and only
//! processes of nginx's own user can wake a worker. The sockets' names are
//! chosen by the kernel (no one can take a worker's name first) and shown
//! in /proc/net/unix; datagrams from another user are read and dropped.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;

fn release_passes(port: u16) -> u64 {
    module_figure(port, "release_passes")
}

/// The abstract names of the Unix sockets `pid` has open (`@` dropped).
fn abstract_sockets_of(pid: i32) -> Vec<String> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the worker's descriptors")
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    fs::read_to_string("/proc/net/unix")
        .expect("/proc/net/unix")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (inode, path) = (fields.get(6)?, fields.get(7)?);
            (inodes.iter().any(|i| i == inode) && path.starts_with('@'))
                .then(|| path[1..].to_owned())
        })
        .collect()
}

/// Sends `count` datagrams to each abstract name, as user `uid`.
fn send_datagrams_as(uid: u32, names: &[String], count: usize) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         for name in {names:?}:\n\
         \x20   for _ in range({count}):\n\
         \x20       s.sendto(b'x', '\\0' + name)\n"
    );
    let status = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .uid(uid)
        .gid(uid)
        .status()
        .expect("python3 (scripts/install-deps installs it)");
    assert!(status.success(), "the sender as uid {uid}: {status}");
}

#[test]
fn holding_runs_nothing_and_only_nginxs_own_user_can_wake_a_worker() {
    let (nginx, _upstream) = start_shop(2, "");
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, 10, |i| seq_request("/item/", i));
    wait_until(BOUND, "10 held", || counters(port, "").held_now == 10);

    // Holding: no worker looks at anything.
    let before = release_passes(port);
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    assert_eq!(
        release_passes(port),
        before,
        "a worker looked while only holding"
    );

    let names: Vec<String> = nginx
        .worker_pids()
        .into_iter()
        .flat_map(abstract_sockets_of)
        .collect();
    // Each worker's wake-up socket, and the socket it sends from once the
    // kernel has named it.
    assert!(names.len() >= 2, "a wake-up socket per worker: {names:?}");

    // Another user (nobody) floods them: dropped, no worker looks.
    send_datagrams_as(65534, &names, 200);
    settle();
    assert_eq!(release_passes(port), before, "another user woke a worker");

    // nginx's own user (the tests run it as root): each looks.
    send_datagrams_as(0, &names, 1);
    wait_until(BOUND, "both workers to look", || {
        release_passes(port) >= before + 2
    });
    assert_still_held(&held);
    resume(port, "");
    finish_all_from_upstream(held);
    nginx.stop();
}
