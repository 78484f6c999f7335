//! CPU time and resident memory of the processes under test, from /proc.

use std::fs;
use std::time::Duration;

/// CPU time used so far by every thread of `pid`, from the scheduler's own
/// nanosecond accounting (`/proc/PID/task/TID/schedstat`, first field): finer
/// than the 10 ms ticks of `/proc/PID/stat`, which matter when the figure to
/// show is under a tenth of a second.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Resident set size of `pid` in bytes (0 once it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| parse_vm_rss_kib(&status))
        .map_or(0, |kib| kib * 1024)
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The children of `parent` (nginx's workers, given its master).
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
                == Some(parent)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The parent pid in a `/proc/PID/stat` line. The command name (field 2) is
/// in parentheses and may itself contain spaces and parentheses.
fn parent_of(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time and RSS summed over a set of processes.
pub fn totals(pids: &[u32]) -> (Duration, u64) {
    pids.iter().fold((Duration::ZERO, 0), |(cpu, rss), &pid| {
        (cpu + cpu_time(pid), rss + rss_bytes(pid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parent_of("123 (nginx: worker) S 77 123 123 0"), Some(77));
        assert_eq!(parent_of("9 (a) b (c)) R 5 9"), Some(5));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn vm_rss_line() {
        assert_eq!(
            parse_vm_rss_kib("Name:\tnginx\nVmRSS:\t    5120 kB\n"),
            Some(5120)
        );
        assert_eq!(parse_vm_rss_kib("Name:\tkthread\n"), None);
    }

    #[test]
    fn this_process_uses_cpu_and_memory() {
        let me = std::process::id();
        let _busy: u64 = (0..200_000u64).map(|i| i * i % 7).sum();
        assert!(cpu_time(me) > Duration::ZERO);
        assert!(rss_bytes(me) > 0);
    }
}
