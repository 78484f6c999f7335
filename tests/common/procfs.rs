//! nginx's processes, read from /proc (Linux only): which are the workers,
//! whether one is alive, whether an old worker still holds the listening
//! socket after a reload.

use std::fs;

/// The fields of /proc/PID/stat after the command name (which is in
/// parentheses and may hold spaces): the state is the first.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// (parent pid, state letter) of a process, or None once it is gone.
fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let fields = stat_fields(pid)?;
    let state = fields.first()?.chars().next()?;
    let parent = fields.get(1)?.parse().ok()?;
    Some((parent, state))
}

/// The CPU time a process has used (user and system), in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// Clock ticks per second (`cpu_ticks`).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

/// `pid` and its live descendants.
pub fn with_descendants(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut at = 0;
    while at < all.len() {
        all.extend(children_of(all[at]));
        at += 1;
    }
    all.retain(|&pid| is_alive(pid));
    all
}

/// A process that exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    matches!(parent_and_state(pid), Some((_, state)) if state != 'Z')
}

/// Live children of `parent`, in pid order.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut children: Vec<i32> = fs::read_dir("/proc")
        .expect("reading /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(
            |&pid| matches!(parent_and_state(pid), Some((p, state)) if p == parent && state != 'Z'),
        )
        .collect();
    children.sort_unstable();
    children
}

/// Whether process `pid` has a descriptor on the socket with this inode.
pub fn holds_socket(pid: i32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target.to_str() == Some(wanted.as_str()))
}
