//! This worker process's slot in the zone (`intermission_core::worker_slots`):
//! claimed as the worker starts, given back as it exits, and the slots of
//! workers that died without giving theirs back reclaimed by any process that
//! finds their owner gone.
//!
//! Whether an owner is alive is asked of `/proc/PID/stat`: a zombie waiting
//! for the master to reap it, or a process that started at another time
//! than the owner did (the pid was reused), mean the owner is gone. When
//! `/proc` cannot be read (no such process, or no descriptor left, or no
//! `/proc`), only `kill(pid, 0)` failing with ESRCH does.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use nginx_sys::{ngx_log_t, NGX_LOG_NOTICE};
use ngx::ngx_log_error;

use intermission_core::app_table::AppTable;
use intermission_core::worker_slots::{Owner, SlotId, WorkerSlot, WorkerSlots, SHARED_SLOT};

/// The slot this process counts its requests in flight in: its own, or the
/// shared one. Set once as the worker starts; read on every request.
static COUNTING_SLOT: AtomicPtr<WorkerSlot> = AtomicPtr::new(ptr::null_mut());

/// Where this process counts in flight: a load, no lock.
#[inline]
pub fn counting_slot() -> Option<&'static WorkerSlot> {
    // SAFETY: set only by `join` to a slot of the zone, which stays mapped
    // for the life of the process.
    unsafe { COUNTING_SLOT.load(Ordering::Relaxed).as_ref() }
}

/// This process in the slot table.
pub struct Membership {
    pub slots: WorkerSlots<'static>,
    /// Its own slot, or `SHARED_SLOT` if none was free.
    pub me: SlotId,
    pub owner: Owner,
}

impl Membership {
    /// Takes a slot for this process (or, with none free, the shared one),
    /// after reclaiming the slots of workers that are gone: the one the
    /// master starts in place of a killed worker reclaims its slot here.
    pub fn join(
        slots: WorkerSlots<'static>,
        table: AppTable<'static>,
        log: *mut ngx_log_t,
    ) -> Self {
        let pid = u64::from(std::process::id());
        let owner = Owner {
            pid,
            started: start_time(pid).unwrap_or(0),
        };
        let membership = Membership {
            slots,
            me: SHARED_SLOT,
            owner,
        };
        membership.reclaim_dead(table, log);
        let me = slots.claim(owner).unwrap_or(SHARED_SLOT);
        if me == SHARED_SLOT {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "intermission: all {} worker slots of the zone are taken; this worker counts in \
                 the shared one: what it counts is not taken back if it dies, and it releases \
                 its held requests in its own order only (a larger intermission_zone has more slots)",
                slots.capacity()
            );
        }
        COUNTING_SLOT.store(ptr::from_ref(slots.get(me)).cast_mut(), Ordering::Relaxed);
        Membership { me, ..membership }
    }

    pub fn has_own_slot(&self) -> bool {
        self.me != SHARED_SLOT
    }

    pub fn slot(&self) -> &'static WorkerSlot {
        self.slots.get(self.me)
    }

    /// Gives this process's slot back as it exits.
    pub fn leave(&self, table: AppTable<'static>) {
        if self.has_own_slot() {
            self.slots.reclaim(self.me, self.owner, |app, held| {
                table.state(app).forget_held(held)
            });
        }
    }

    /// Reclaims the slots of owners that are gone; returns how many.
    pub fn reclaim_dead(&self, table: AppTable<'static>, log: *mut ngx_log_t) -> usize {
        let mut reclaimed = 0;
        for (id, owner) in self.slots.owners() {
            if id == self.me || is_alive(owner) {
                continue;
            }
            let mut held = 0;
            let in_flight = self.slots.get(id).in_flight_total();
            if self.slots.reclaim(id, owner, |app, n| {
                held += n;
                table.state(app).forget_held(n);
            }) {
                reclaimed += 1;
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "intermission: worker process {} is gone; its slot is reclaimed: \
                     {held} held, {} in-flight and {} upgraded requests no longer counted",
                    owner.pid,
                    in_flight.requests,
                    in_flight.upgraded
                );
            }
        }
        reclaimed
    }
}

/// Whether the process `owner` still runs. Only "no such process" means it
/// does not: /proc may be unreadable for other reasons (a worker out of
/// descriptors, a hardened /proc), and a live worker taken for dead would
/// lose its slot while it runs. A zombie, or a process that started at
/// another time than the owner (the pid was reused), is gone.
pub fn is_alive(owner: Owner) -> bool {
    match read_stat(owner.pid) {
        Ok(stat) => {
            !matches!(stat.state, 'Z' | 'X' | 'x')
                && (owner.started == 0 || stat.started == owner.started)
        }
        Err(_) => {
            let pid = libc::pid_t::try_from(owner.pid).unwrap_or(0);
            // SAFETY: signal 0 only checks that the process exists.
            let exists = unsafe { libc::kill(pid, 0) } == 0;
            exists || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
        }
    }
}

struct Stat {
    state: char,
    /// Field 22: clock ticks from boot to the process's start.
    started: u64,
}

fn start_time(pid: u64) -> Option<u64> {
    read_stat(pid).ok().map(|stat| stat.started)
}

fn read_stat(pid: u64) -> std::io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| std::io::Error::other("unreadable /proc/PID/stat"))
}

/// `PID (COMM) STATE ...`: the command may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` is field 3; the start time is field 22.
    let started = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, started })
}
