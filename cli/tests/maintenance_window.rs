//! What a maintenance window throws at the command line, against real nginx
//! and real processes: an SSH session that drops in the middle of `run` (a
//! pseudo-terminal that goes away), output piped to `head`; a pause that
//! fails behind proxies that answer 502 or never answer, or is cut short
//! while its calls are on their way; commands that leave their process
//! group, read the terminal first, or leave a member the command line may
//! not signal; passwords with `#`, `@`, `:` and `%`; targets named by a
//! query string; the wrong URL; `status` for scripts; the manual pages;
//! HTTPS with an authority of one's own.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use support::*;

/// A pseudo-terminal, the controlling terminal of an `intermission` as
/// over SSH: what it shows is read in the background; closing it is the
/// hang-up of a dropped session.
struct Terminal {
    master: Option<fs::File>,
    stop: Arc<AtomicBool>,
    reader: thread::JoinHandle<String>,
}

impl Terminal {
    /// Starts `intermission ARGS` on a new pseudo-terminal (its stdin,
    /// stdout, stderr and controlling terminal).
    fn run(args: &[String]) -> (Child, Terminal) {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two new descriptors into the integers given.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty");
        // The master stays in the test alone (openpty's descriptors are
        // inherited across exec otherwise, and the hang-up would not come).
        // SAFETY: fcntl on a descriptor just opened.
        unsafe { libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: just opened, owned by nothing else.
        let (master, slave) =
            unsafe { (fs::File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut command = Command::new(env!("CARGO_BIN_EXE_intermission"));
        command
            .args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the child makes
        // the pseudo-terminal (its stdin) its controlling terminal.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = command.spawn().expect("starting intermission");
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = master.try_clone().unwrap();
        let their_stop = stop.clone();
        let reader = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while !their_stop.load(Ordering::SeqCst) {
                let mut poll = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&reader),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: polling one descriptor this thread owns.
                if unsafe { libc::poll(&mut poll, 1, 50) } <= 0 {
                    continue;
                }
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&chunk[..n]),
                }
            }
            // Dropping `reader` closes this copy of the master.
            String::from_utf8_lossy(&seen).into_owned()
        });
        let terminal = Terminal {
            master: Some(master),
            stop,
            reader,
        };
        (child, terminal)
    }

    fn type_in(&mut self, text: &str) {
        self.master
            .as_mut()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// Closes the terminal (every copy of its master side): the hang-up.
    /// Returns what it showed.
    fn hang_up(mut self) -> String {
        drop(self.master.take());
        self.stop.store(true, Ordering::SeqCst);
        self.reader.join().unwrap_or_default()
    }
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(BOUND, what, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

#[test]
fn a_dropped_session_in_the_middle_of_run_still_resumes_every_target() {
    let fleet = Fleet::start(2);
    let args = with(&["run"], &fleet.targets())
        .into_iter()
        .chain(["--", "sleep", "30"].map(String::from))
        .collect::<Vec<_>>();
    let (mut cli, terminal) = Terminal::run(&args);
    fleet.wait_all_paused();
    // The session drops: the terminal goes away (SIGHUP, then EIO on every
    // write to it).
    let shown = terminal.hang_up();
    let status = wait_exit(&mut cli, "intermission to exit after the hang-up");
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGHUP),
        "{status:?}: {shown}"
    );
    fleet.assert_all(RESUMED, "resumed after the hang-up");

    // Its output piped to `head -c 1`: every later write fails (EPIPE).
    let script = format!(
        "{} run {} -- sh -c 'echo one; sleep 0.3; echo two' 2>&1 | head -c 1",
        env!("CARGO_BIN_EXE_intermission"),
        fleet.targets().join(" ")
    );
    let piped = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(piped.stdout.len(), 1, "{piped:?}");
    wait_until(BOUND, "every target to be resumed", || {
        fleet
            .ports()
            .iter()
            .all(|&port| control(port, "status").text() == RESUMED)
    });
    fleet.stop();
}

/// How a proxy in front of a target behaves.
#[derive(Clone, Copy)]
enum Proxy {
    /// Passes the request on, then answers 502 whatever nginx said.
    Answers502,
    /// Passes the request on, and never answers.
    Silent,
    /// Waits this long before it passes an `enable` on (and answers); the
    /// rest at once.
    Late(Duration),
}

/// A proxy on a port of its own in front of nginx on `port`.
fn proxy(port: u16, how: Proxy) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let own = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(move || relay(client, port, how));
        }
    });
    own
}

fn relay(mut client: TcpStream, port: u16, how: Proxy) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    if let Proxy::Late(delay) = how {
        if request.windows(7).any(|w| w == b"/enable") {
            thread::sleep(delay);
        }
    }
    let Ok(mut nginx) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    // One request, then the answer to its end.
    let text = String::from_utf8_lossy(&request).replace("Connection: keep-alive", "");
    let text = text.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let _ = nginx.write_all(text.as_bytes());
    let mut answer = Vec::new();
    let _ = nginx.read_to_end(&mut answer);
    match how {
        Proxy::Answers502 => {
            let _ = client.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbad\n",
            );
        }
        Proxy::Silent => thread::sleep(Duration::from_secs(60)),
        Proxy::Late(_) => {
            let _ = client.write_all(&answer);
        }
    }
}

#[test]
fn a_failed_pause_leaves_nothing_paused_behind_proxies_that_fail() {
    let fleet = Fleet::start(3);
    let ports = fleet.ports();
    let direct = format!("http://127.0.0.1:{}{CONTROL}", ports[0]);
    let bad_gateway = format!(
        "http://127.0.0.1:{}{CONTROL}",
        proxy(ports[1], Proxy::Answers502)
    );
    let silent = format!(
        "http://127.0.0.1:{}{CONTROL}",
        proxy(ports[2], Proxy::Silent)
    );
    let refused = format!("http://127.0.0.1:{}{CONTROL}", dead_port());
    let targets = [direct, bad_gateway.clone(), silent.clone(), refused.clone()];
    let paused = run_with(&with(
        &["pause", "--timeout", "2", "--retries", "0"],
        &targets,
    ));
    assert_eq!(paused.status.code(), Some(1));
    // Every nginx behind them was paused, and every one is running again.
    fleet.assert_all(RESUMED, "rolled back");
    let err = stderr(&paused);
    assert!(
        err.contains("the state of 2 of the 3 target(s) this call may have paused is unknown")
            && err.contains(&bad_gateway)
            && err.contains(&silent),
        "{err}"
    );
    // The rollback called, and names, only what may have paused: not the
    // target that refused the connection.
    assert!(!err.contains(&refused), "{err}");
    let out = stdout(&paused);
    assert!(
        out.contains("HTTP 502 from something in front of nginx"),
        "{out}"
    );
    fleet.stop();
}

#[test]
fn a_pause_cut_short_resumes_only_after_its_calls_have_ended() {
    let fleet = Fleet::start(1);
    let late = proxy(fleet.ports()[0], Proxy::Late(Duration::from_millis(1_500)));
    let target = format!("http://127.0.0.1:{late}{CONTROL}");
    let sent = Instant::now();
    let mut cli = spawn(&with(&["pause", "--timeout", "5"], &[target]));
    thread::sleep(Duration::from_millis(400));
    // SAFETY: signalling the test's own child.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    let status = wait_exit(&mut cli, "intermission to exit");
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    // The enable reaches nginx 1.5 s after it was sent: look once it has,
    // whenever the command line exited. The resume must have come after it.
    let landed = sent + Duration::from_millis(2_000);
    thread::sleep(landed.saturating_duration_since(Instant::now()));
    fleet.assert_all(RESUMED, "rolled back after the late pause");
    fleet.stop();
}

#[test]
fn run_waits_for_what_leaves_its_group_and_for_a_command_that_reads_the_terminal() {
    let fleet = Fleet::start(1);
    let marker = temp_path("detached");
    let _ = fs::remove_file(&marker);
    // A job that leaves the command's process group (a new session) and
    // ends after the command: the resume waits for it.
    let script = format!(
        "setsid sh -c 'sleep 1; touch {}' & exit 0",
        marker.display()
    );
    let ran = run_with(
        &with(&["run"], &fleet.targets())
            .into_iter()
            .chain(["--", "sh", "-c", &script].map(String::from))
            .collect::<Vec<_>>(),
    );
    assert!(ran.status.success(), "{ran:?}");
    assert!(marker.exists(), "resumed before the detached job ended");
    assert!(
        stderr(&ran)
            .contains("waiting for what the command left running outside its process group"),
        "{}",
        stderr(&ran)
    );
    // A job that never ends is waited for no longer than --wait-detached.
    let started = Instant::now();
    let ran = run_with(
        &with(&["run", "--wait-detached", "1"], &fleet.targets())
            .into_iter()
            // (Its output elsewhere: the test waits for the pipes to close.)
            .chain(["--", "sh", "-c", "setsid sleep 30 >/dev/null 2>&1 & exit 0"].map(String::from))
            .collect::<Vec<_>>(),
    );
    assert!(ran.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "waited for the daemon"
    );
    assert!(
        stderr(&ran).contains("resuming while these still run:")
            && stderr(&ran).contains("(sleep)"),
        "{}",
        stderr(&ran)
    );
    fleet.assert_all(RESUMED, "resumed");

    // On a terminal, a command that reads it first (a sudo password
    // prompt) gets what is typed.
    let answer = temp_path("typed");
    let _ = fs::remove_file(&answer);
    let script = format!("read line; echo \"$line\" > {}", answer.display());
    let args = with(&["run"], &fleet.targets())
        .into_iter()
        .chain(["--", "sh", "-c", &script].map(String::from))
        .collect::<Vec<_>>();
    let (mut cli, mut terminal) = Terminal::run(&args);
    fleet.wait_all_paused();
    terminal.type_in("secret-typed\n");
    let status = wait_exit(&mut cli, "intermission to exit after the command read");
    let shown = terminal.hang_up();
    assert!(status.success(), "{status:?}: {shown}");
    assert_eq!(fs::read_to_string(&answer).unwrap(), "secret-typed\n");
    fleet.assert_all(RESUMED, "resumed");
    let _ = fs::remove_file(&answer);
    let _ = fs::remove_file(&marker);
    fleet.stop();
}

/// A member of the command's group that the command line may not signal
/// (another user's, as a root `sudo` is for an operator): `kill(-group, 0)`
/// fails with EPERM while it runs, which is not "the group is empty". The
/// command line runs as `nobody`; the member is a setuid-root copy of
/// python that makes itself wholly root, then works for a moment.
#[test]
fn run_waits_for_a_member_of_its_group_it_may_not_signal() {
    let fleet = Fleet::start(1);
    let dir = temp_path("not-mine");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let python = dir.join("python-root");
    fs::copy(fs::canonicalize("/usr/bin/python3").unwrap(), &python).unwrap();
    fs::set_permissions(&python, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let (root, done) = (dir.join("root"), dir.join("done"));
    let member = format!(
        "import os, time\nos.setuid(0)\nopen('{}', 'w').write(str(os.getuid()))\n\
         time.sleep(1.5)\nopen('{}', 'w').write('done')",
        root.display(),
        done.display()
    );
    // The shell exits soon; the member stays in the group. (Its output
    // elsewhere: the test must not wait for the pipes to close.)
    let script = format!(
        "{} -c \"$MEMBER\" >/dev/null 2>&1 & sleep 0.3; exit 0",
        python.display()
    );
    // A copy nobody may run wherever the checkout is (/root, say).
    let cli = dir.join("intermission");
    fs::copy(env!("CARGO_BIN_EXE_intermission"), &cli).unwrap();
    let ran = Command::new(&cli)
        .args(with(&["run"], &fleet.targets()))
        .args(["--", "sh", "-c", &script])
        .env("MEMBER", &member)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(
        fs::read_to_string(&root).ok().as_deref(),
        Some("0"),
        "the member did not become root (a nosuid mount?): {ran:?}"
    );
    assert!(
        done.exists(),
        "resumed while the member still ran: {}",
        stderr(&ran)
    );
    fleet.assert_all(RESUMED, "resumed");
    let _ = fs::remove_dir_all(&dir);
    fleet.stop();
}

#[test]
fn passwords_with_any_character_never_show_in_output_or_the_process_list() {
    const PASSWORD: &str = "p#s@s:w%rd";
    // Hashed: nginx's htpasswd ends a plain password at its first ':'.
    let hashed = Command::new("openssl")
        .args(["passwd", "-apr1", PASSWORD])
        .output()
        .expect("openssl");
    let hashed = String::from_utf8(hashed.stdout).unwrap();
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .file("htpasswd", &format!("ops:{}\n", hashed.trim()))
            .server(&format!(
                "{} {} location {CONTROL} {{ auth_basic \"intermission\"; \
                 auth_basic_user_file {PREFIX_MARK}/htpasswd; intermission_control; }}",
                set_app_name("shop"),
                held_location("/", &upstream, "")
            )),
    );
    let target = format!("http://127.0.0.1:{}{CONTROL}", nginx.port());
    let credentials = temp_path("credentials");
    fs::write(&credentials, format!("ops:{PASSWORD}\n")).unwrap();
    fs::set_permissions(
        &credentials,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let file = credentials.to_str().unwrap();

    // From a credentials file: used, and in no argument of the process.
    let cli = spawn(&[
        "run".into(),
        "--credentials".into(),
        file.into(),
        target.clone(),
        "--".into(),
        "sleep".into(),
        "1".into(),
    ]);
    wait_until(BOUND, "the pause", || {
        control_request("GET", "status")
            .header("Authorization", basic(PASSWORD))
            .send(nginx.port())
            .text()
            == PAUSED
    });
    let cmdline = fs::read(format!("/proc/{}/cmdline", cli.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("s@s"),
        "the password is in the process list"
    );
    let output = cli.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut outputs = vec![output];

    // In the URL, percent-encoded: used, never printed, and a warning says
    // the process list shows it.
    let encoded = format!(
        "http://ops:p%23s%40s%3Aw%25rd@127.0.0.1:{}{CONTROL}",
        nginx.port()
    );
    let status = intermission(&["status", &encoded]);
    assert!(status.status.success(), "{status:?}");
    assert!(
        stderr(&status).contains("can be read by other users"),
        "{status:?}"
    );
    outputs.push(status);

    // A raw `#` in it: refused, without showing it.
    let raw = format!("http://ops:{PASSWORD}@127.0.0.1:{}{CONTROL}", nginx.port());
    let refused = intermission(&["status", &raw]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("%23"), "{refused:?}");
    outputs.push(refused);

    for output in &outputs {
        let all = format!("{}{}", stdout(output), stderr(output));
        for part in ["p#s", "s@s", "s:w", "w%rd", "p%23s"] {
            assert!(
                !all.contains(part),
                "{part:?} of the password printed: {all}"
            );
        }
    }
    let _ = fs::remove_file(&credentials);
    nginx.stop();
}

fn basic(password: &str) -> String {
    use std::fmt::Write as _;
    let pair = format!("ops:{password}");
    // Base64 by hand: the test needs it once.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in pair.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = out.write_char(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_target_with_a_query_string_and_app_pick_the_app() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&app_per_query_server(&upstream)));
    let port = nginx.port();
    let shop = format!("http://127.0.0.1:{port}{CONTROL}?app=shop");
    assert!(intermission(&["pause", &shop]).status.success());
    assert_eq!(counters(port, "app=shop").state, "paused");
    assert_eq!(counters(port, "app=blog").state, "running");
    let bare = format!("http://127.0.0.1:{port}{CONTROL}");
    assert!(intermission(&["pause", "--app", "blog", &bare])
        .status
        .success());
    assert_eq!(counters(port, "app=blog").state, "paused");
    let status = intermission(&["status", "--json", &shop]);
    assert_eq!(json(&status)["targets"][0]["app"], "shop");
    assert!(intermission(&["resume", &shop]).status.success());
    assert!(intermission(&["resume", "--app", "blog", &bare])
        .status
        .success());
    assert_eq!(counters(port, "app=shop").state, "running");
    assert_eq!(counters(port, "app=blog").state, "running");
    nginx.stop();
}

#[test]
fn a_site_url_instead_of_the_control_location_gets_a_hint() {
    let (nginx, _upstream) = start_shop(1, "");
    let site = format!("http://127.0.0.1:{}/", nginx.port());
    let running = intermission(&["status", &site]);
    assert_eq!(running.status.code(), Some(1));
    assert!(
        stdout(&running).contains("this is not the intermission_control location"),
        "{running:?}"
    );
    pause(nginx.port(), "");
    let held = intermission(&["status", "--timeout", "1", &site]);
    assert_eq!(held.status.code(), Some(1));
    assert!(
        stdout(&held).contains("its requests are held while the app is paused"),
        "{held:?}"
    );
    resume(nginx.port(), "");
    nginx.stop();
}

#[test]
fn status_says_every_figure_and_answers_scripts_by_its_exit_status() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&app_per_query_server(&upstream)));
    let port = nginx.port();
    let target = format!("http://127.0.0.1:{port}{CONTROL}");
    control(port, "enable?app=shop&ttl=5m");
    control(port, "enable?app=blog");
    let shop = format!("{target}?app=shop");
    let expect = |state: &str, target: &str| {
        intermission(&["status", "--expect", state, target])
            .status
            .code()
    };
    assert_eq!(expect("paused", &shop), Some(0));
    assert_eq!(expect("running", &shop), Some(3));
    let lines = stdout(&intermission(&["status", &shop]));
    assert!(
        lines.contains("in flight 0") && lines.contains("until 20"),
        "{lines}"
    );
    let all = json(&intermission(&["status", "--all", "--json", &target]));
    let apps: Vec<&str> = all["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["app"].as_str().unwrap())
        .collect();
    assert!(apps.contains(&"shop") && apps.contains(&"blog"), "{all}");
    assert!(
        all["targets"][0]["status"]["held_in_pause"].is_u64(),
        "{all}"
    );
    assert_eq!(
        intermission(&["status", "--all", "--expect", "paused", &target])
            .status
            .code(),
        Some(0)
    );
    control(port, "disable?app=blog");
    assert_eq!(
        intermission(&["status", "--all", "--expect", "paused", &target])
            .status
            .code(),
        Some(3)
    );
    nginx.stop();
}

#[test]
fn every_subcommand_has_a_manual_page_with_its_options() {
    let dir = temp_path("man");
    let _ = fs::remove_dir_all(&dir);
    let made = intermission(&["manpage", "--dir", dir.to_str().unwrap()]);
    assert!(made.status.success());
    for (page, option) in [
        ("intermission.1", "pause"),
        ("intermission-pause.1", "ttl"),
        ("intermission-resume.1", "rate"),
        ("intermission-run.1", "wait\\-detached"),
        ("intermission-status.1", "expect"),
        ("intermission-stop.1", "ttl"),
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(text.contains(option), "{page} names {option}: {text}");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn https_targets_trust_the_systems_store_or_a_cacert() {
    let dir = temp_path("tls");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl");
        assert!(output.status.success(), "{args:?}: {output:?}");
    };
    // An authority of one's own, and a certificate for 127.0.0.1 from it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=intermission test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .file(
                "server.pem",
                &fs::read_to_string(dir.join("server.pem")).unwrap(),
            )
            .file(
                "server.key",
                &fs::read_to_string(dir.join("server.key")).unwrap(),
            )
            .server_listening(
                "ssl",
                &format!(
                    "ssl_certificate {PREFIX_MARK}/server.pem; \
                     ssl_certificate_key {PREFIX_MARK}/server.key; {}",
                    app_server("shop", &upstream, "")
                ),
            ),
    );
    let target = format!("https://127.0.0.1:{}{CONTROL}", nginx.port());
    let unknown = intermission(&["status", &target]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).contains("--cacert FILE"), "{unknown:?}");
    let ca = dir.join("ca.pem");
    let trusted = intermission(&["status", "--cacert", ca.to_str().unwrap(), &target]);
    assert!(trusted.status.success(), "{trusted:?}");
    // The system's store, as configured on this machine (here through
    // SSL_CERT_FILE, which the system's loader honours).
    let system = intermission_with_env(
        &["status", &target],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    assert!(system.status.success(), "{system:?}");
    let _ = fs::remove_dir_all(&dir);
    nginx.stop();
}
