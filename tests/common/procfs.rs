//! nginx's processes, read from /proc (Linux only): which are the workers,
//! whether one is alive, whether an old worker still holds the listening
//! socket after a reload.

use std::fs;

/// (parent pid, state letter) of a process, or None once it is gone.
fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((parent, state))
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
