//! The table of apps kept in the shared-memory zone.
//!
//! A fixed array of slots, open addressing with linear probing, keyed by the
//! app name. Slots are only ever added (an app that was paused once keeps its
//! slot for the life of the zone), so lookups need no lock: a reader sees a
//! slot either free or fully written. Adding a slot is rare (the first pause
//! of an app) and is serialized by the caller with the zone's mutex.
//!
//! Everything here is safe Rust over atomics; `zone.rs` places the table in
//! shared memory, and the unit tests place it on the heap.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{name_hash, AppId, MAX_APP_NAME_LEN};
use crate::in_flight::NameKey;
use crate::pause::{AppState, PauseOutcome, ResumeOutcome, StopOutcome};
use crate::worker_slots::WorkerSlot;

const NAME_WORDS: usize = MAX_APP_NAME_LEN / 8;

/// Bumped whenever the shared layout changes, so that a reload into a build
/// with another layout refuses the old zone instead of misreading it.
const LAYOUT_VERSION: u64 = 10;

/// The version and the sizes of the three parts of the zone (header, worker
/// slot, app slot), 16 bits each: a reload into a build where any of them
/// differs refuses the old zone.
pub fn layout_stamp() -> u64 {
    let size = |bytes: usize| bytes as u64 & 0xffff;
    (LAYOUT_VERSION << 48)
        | (size(std::mem::size_of::<TableHeader>()) << 32)
        | (size(std::mem::size_of::<AppSlot>()) << 16)
        | size(std::mem::size_of::<WorkerSlot>())
}

#[derive(Debug, PartialEq, Eq)]
pub struct TableFull;

/// Zone-wide figures, in front of the slots.
#[repr(C)]
#[derive(Debug)]
pub struct TableHeader {
    layout: AtomicU64,
    /// App slots.
    capacity: AtomicU64,
    /// Worker slots (see `worker_slots`), in front of the app slots.
    worker_slots: AtomicU64,
    /// Chosen at random as the zone is created: names what belongs to this
    /// zone outside it (the workers' wake-up sockets), apart from other
    /// nginx instances on the host. A reload keeps the zone and its id.
    zone_id: AtomicU64,
    /// The secret key of the hash that finds an app's in-flight counts
    /// (`in_flight`), drawn as the zone is created.
    name_key: [AtomicU64; 2],
    /// How many apps are paused right now: the one value a request reads when
    /// nothing is paused.
    paused_apps: AtomicU64,
    apps_in_use: AtomicU64,
    /// Bumped by each configuration (nginx start or reload) that takes the
    /// zone over. With `newest_workers`, it lets a worker that is shutting
    /// down tell a reload (a newer configuration runs on the zone and carries
    /// the pause on: keep holding) from a stop (answer what it holds).
    configurations: AtomicU64,
    /// One bit per worker number of the newest configuration, set when it
    /// begins and cleared as each of its workers exits gracefully. A worker
    /// that crashes leaves its bit set, and the one the master starts in its
    /// place clears it, so a crash never makes a stop look like a reload.
    newest_workers: [AtomicU64; WORKER_WORDS],
    /// The newest configuration has more workers than `newest_workers` has
    /// bits: it is taken as running until it is replaced.
    newest_workers_uncounted: AtomicU64,
    state_file: StateFileFigures,
    /// Panics the module caught (each logged at `alert`; the request got
    /// the answer of the module's policy), in every process.
    internal_errors: AtomicU64,
    /// Requests whose `$app_name` was longer than any app's can be: let
    /// through (no such app can be paused).
    app_names_too_long: AtomicU64,
}

/// The state file's figures (`intermission_state_file`), for status: wall
/// clock times in Unix ms, 0 for never.
#[repr(C)]
#[derive(Debug, Default)]
struct StateFileFigures {
    /// The generation of the state this zone last wrote to the file or took
    /// from it (see `state_file`).
    generation: AtomicU64,
    restored_at: AtomicU64,
    restored_apps: AtomicU64,
    saved_at: AtomicU64,
    save_errors: AtomicU64,
}

/// A reading of `StateFileFigures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateFileCounts {
    pub restored_at: Option<u64>,
    pub restored_apps: u64,
    pub saved_at: Option<u64>,
    pub save_errors: u64,
}

const WORKER_WORDS: usize = 16;
const COUNTED_WORKERS: usize = WORKER_WORDS * 64;

impl TableHeader {
    pub fn new(capacity: usize, worker_slots: usize, zone_id: u64, name_key: NameKey) -> Self {
        TableHeader {
            layout: AtomicU64::new(layout_stamp()),
            capacity: AtomicU64::new(capacity as u64),
            worker_slots: AtomicU64::new(worker_slots as u64),
            zone_id: AtomicU64::new(zone_id),
            name_key: name_key.0.map(AtomicU64::new),
            paused_apps: AtomicU64::new(0),
            apps_in_use: AtomicU64::new(0),
            configurations: AtomicU64::new(0),
            newest_workers: Default::default(),
            newest_workers_uncounted: AtomicU64::new(0),
            state_file: StateFileFigures::default(),
            internal_errors: AtomicU64::new(0),
            app_names_too_long: AtomicU64::new(0),
        }
    }

    /// The pause state was restored from the state file at `at`: `apps` of
    /// its apps paused or stopped again.
    pub fn record_state_restored(&self, at: u64, apps: u64) {
        self.state_file.restored_apps.store(apps, Ordering::Relaxed);
        self.state_file
            .restored_at
            .store(at.max(1), Ordering::Release);
    }

    /// The generation of the next write of the state file, which now says
    /// `in_file` (if it can be read): one past both it and this zone's own.
    /// The caller holds the zone's lock, and adopts it once written.
    pub fn next_state_generation(&self, in_file: Option<u64>) -> u64 {
        self.state_generation()
            .max(in_file.unwrap_or(0))
            .saturating_add(1)
    }

    /// The generation of the state this zone has: the last it wrote or took.
    pub fn state_generation(&self) -> u64 {
        self.state_file.generation.load(Ordering::Acquire)
    }

    /// This zone has the state of `generation` now (taken from the file).
    pub fn adopt_state_generation(&self, generation: u64) {
        self.state_file
            .generation
            .fetch_max(generation, Ordering::AcqRel);
    }

    /// The state file was written at `at`.
    pub fn record_state_saved(&self, at: u64) {
        self.state_file.saved_at.store(at.max(1), Ordering::Release);
    }

    /// A write of the state file failed.
    pub fn record_state_save_error(&self) {
        self.state_file.save_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn state_file_counts(&self) -> StateFileCounts {
        let time = |at: &AtomicU64| Some(at.load(Ordering::Acquire)).filter(|&ms| ms != 0);
        StateFileCounts {
            restored_at: time(&self.state_file.restored_at),
            restored_apps: self.state_file.restored_apps.load(Ordering::Relaxed),
            saved_at: time(&self.state_file.saved_at),
            save_errors: self.state_file.save_errors.load(Ordering::Relaxed),
        }
    }

    /// Counts in a configuration that is about to start `workers` workers;
    /// returns its number. Called by nginx's master before it forks them.
    pub fn begin_configuration(&self, workers: usize) -> u64 {
        for (index, word) in self.newest_workers.iter().enumerate() {
            let first = index * 64;
            let bits = match workers.saturating_sub(first) {
                0 => 0,
                n if n >= 64 => u64::MAX,
                n => (1u64 << n) - 1,
            };
            word.store(bits, Ordering::Release);
        }
        self.newest_workers_uncounted
            .store(u64::from(workers > COUNTED_WORKERS), Ordering::Release);
        self.configurations.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Worker number `worker` of `configuration` exits gracefully.
    pub fn worker_exited(&self, configuration: u64, worker: usize) {
        if configuration != self.configurations.load(Ordering::Acquire) {
            return;
        }
        if let Some(word) = self.newest_workers.get(worker / 64) {
            word.fetch_and(!(1u64 << (worker % 64)), Ordering::AcqRel);
        }
    }

    /// For a worker of `configuration` that is shutting down: whether a newer
    /// configuration still runs on this zone (a reload), rather than nginx
    /// stopping.
    pub fn newer_configuration_runs(&self, configuration: u64) -> bool {
        self.configurations.load(Ordering::Acquire) != configuration
            && (self.newest_workers_uncounted.load(Ordering::Acquire) != 0
                || self
                    .newest_workers
                    .iter()
                    .any(|word| word.load(Ordering::Acquire) != 0))
    }

    /// The counter of panics the module caught, for its FFI guard.
    pub fn internal_errors_counter(&self) -> &AtomicU64 {
        &self.internal_errors
    }

    /// A request's `$app_name` was too long to name an app.
    pub fn record_app_name_too_long(&self) {
        self.app_names_too_long.fetch_add(1, Ordering::Relaxed);
    }

    /// Panics caught, and app names too long, so far.
    pub fn error_counts(&self) -> (u64, u64) {
        (
            self.internal_errors.load(Ordering::Relaxed),
            self.app_names_too_long.load(Ordering::Relaxed),
        )
    }

    pub fn layout(&self) -> u64 {
        self.layout.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed) as usize
    }

    pub fn worker_slots(&self) -> usize {
        self.worker_slots.load(Ordering::Relaxed) as usize
    }

    pub fn zone_id(&self) -> u64 {
        self.zone_id.load(Ordering::Relaxed)
    }

    /// The key of the hash of app names for in-flight counting.
    #[inline]
    pub fn name_key(&self) -> NameKey {
        NameKey([&self.name_key[0], &self.name_key[1]].map(|word| word.load(Ordering::Relaxed)))
    }

    /// True when some app is paused. This is the whole cost of the module for
    /// a request while nothing is paused: one shared-memory load.
    #[inline]
    pub fn any_paused(&self) -> bool {
        self.paused_apps.load(Ordering::Acquire) != 0
    }

    /// `any_paused`, read in the single total order of pauses and in-flight
    /// counts (see `AppState::phase_now`): after counting a request in
    /// flight, a request that reads false here is one every drain sees.
    #[inline]
    pub fn any_paused_now(&self) -> bool {
        self.paused_apps.load(Ordering::SeqCst) != 0
    }
}

#[repr(C)]
#[derive(Debug, Default)]
pub struct AppSlot {
    /// 0 while free; the name's length plus one once the slot is in use.
    /// Stored with Release after the name, so a reader that sees it non-zero
    /// sees the whole name.
    claim: AtomicU64,
    hash: AtomicU64,
    name: [AtomicU64; NAME_WORDS],
    state: AppState,
}

/// The app table: a header and its slots, wherever they live.
#[derive(Clone, Copy)]
pub struct AppTable<'a> {
    header: &'a TableHeader,
    slots: &'a [AppSlot],
}

impl<'a> AppTable<'a> {
    pub fn new(header: &'a TableHeader, slots: &'a [AppSlot]) -> Self {
        debug_assert_eq!(header.capacity(), slots.len());
        AppTable { header, slots }
    }

    pub fn any_paused(&self) -> bool {
        self.header.any_paused()
    }

    pub fn header(&self) -> &'a TableHeader {
        self.header
    }

    pub fn apps_in_use(&self) -> usize {
        self.header.apps_in_use.load(Ordering::Relaxed) as usize
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn state(&self, app: AppId) -> &'a AppState {
        &self.slots[app.0 as usize].state
    }

    /// Looks an app up without a lock. `None` means it was never paused.
    pub fn find(&self, name: &[u8]) -> Option<AppId> {
        if name.len() > MAX_APP_NAME_LEN || self.slots.is_empty() {
            return None;
        }
        let hash = name_hash(name);
        let words = pack_name(name);
        for index in self.probe_order(hash) {
            let slot = &self.slots[index];
            match slot.claim.load(Ordering::Acquire) {
                0 => return None,
                claim if claim == name.len() as u64 + 1 && slot.holds(hash, &words) => {
                    return Some(AppId(index as u32))
                }
                _ => {}
            }
        }
        None
    }

    /// Finds an app, adding it if it is new. `lock` is called only when a
    /// slot must be written, and its guard is held while that happens: every
    /// process that may add apps must pass the same cross-process lock.
    pub fn find_or_add<G>(
        &self,
        name: &[u8],
        lock: impl FnOnce() -> G,
    ) -> Result<AppId, TableFull> {
        assert!(
            name.len() <= MAX_APP_NAME_LEN,
            "app names are checked before"
        );
        if let Some(app) = self.find(name) {
            return Ok(app);
        }
        let _guard = lock();
        // Another worker may have added it between the lookup and the lock.
        if let Some(app) = self.find(name) {
            return Ok(app);
        }
        let hash = name_hash(name);
        let index = self
            .probe_order(hash)
            .find(|&index| self.slots[index].claim.load(Ordering::Acquire) == 0)
            .ok_or(TableFull)?;
        let slot = &self.slots[index];
        slot.hash.store(hash, Ordering::Relaxed);
        for (word, value) in slot.name.iter().zip(pack_name(name)) {
            word.store(value, Ordering::Relaxed);
        }
        slot.claim.store(name.len() as u64 + 1, Ordering::Release);
        self.header.apps_in_use.fetch_add(1, Ordering::Relaxed);
        Ok(AppId(index as u32))
    }

    /// Every app that has a slot, in slot order.
    pub fn apps(&self) -> impl Iterator<Item = AppId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.claim.load(Ordering::Acquire) != 0)
            .map(|(index, _)| AppId(index as u32))
    }

    pub fn name(&self, app: AppId) -> Vec<u8> {
        let slot = &self.slots[app.0 as usize];
        let len = (slot.claim.load(Ordering::Acquire) as usize).saturating_sub(1);
        let mut bytes: Vec<u8> = slot
            .name
            .iter()
            .flat_map(|word| word.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        bytes.truncate(len);
        bytes
    }

    /// Pauses an app and keeps the zone's count of paused apps in step.
    pub fn pause(&self, app: AppId) -> PauseOutcome {
        self.pause_until(app, 0, None)
    }

    /// Pauses an app at `now`, to end by itself at `deadline`.
    pub fn pause_until(&self, app: AppId, now: u64, deadline: Option<u64>) -> PauseOutcome {
        let outcome = self.state(app).pause_until(now, deadline);
        if outcome == PauseOutcome::Paused {
            self.header.paused_apps.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }

    /// Stops an app at `now` (to end by itself at `deadline` if it was
    /// running).
    pub fn stop_until(&self, app: AppId, now: u64, deadline: Option<u64>) -> StopOutcome {
        let outcome = self.state(app).stop_until(now, deadline);
        if outcome == StopOutcome::StoppedRunning {
            self.header.paused_apps.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }

    /// Ends an app's pause if its deadline has passed at `now`, as a resume
    /// would; returns how many requests the pause held.
    pub fn end_if_expired(&self, app: AppId, now: u64) -> Option<u64> {
        match self.counted(self.state(app).end_if_expired(now)?) {
            ResumeOutcome::Resumed { held } => Some(held),
            ResumeOutcome::NotPaused => None,
        }
    }

    /// Resumes an app, releasing what it held at most `rate` per second.
    pub fn resume_paced(&self, app: AppId, now: u64, rate: u64) -> ResumeOutcome {
        self.counted(self.state(app).resume_paced(now, rate))
    }

    /// Ends an app's paced release, if one runs: every worker releases the
    /// rest of its backlog at its next check.
    pub fn end_pacing(&self, app: AppId, now: u64) -> bool {
        self.state(app).end_pacing(now)
    }

    /// Resumes an app.
    pub fn resume(&self, app: AppId) -> ResumeOutcome {
        self.counted(self.state(app).resume())
    }

    /// Keeps the zone's count of paused apps in step with a resume. Never
    /// below zero: a count that wrapped would read as "something is
    /// paused" for every request from then on.
    fn counted(&self, outcome: ResumeOutcome) -> ResumeOutcome {
        if let ResumeOutcome::Resumed { .. } = outcome {
            let _ =
                self.header
                    .paused_apps
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        outcome
    }

    fn probe_order(&self, hash: u64) -> impl Iterator<Item = usize> {
        let capacity = self.slots.len();
        let start = (hash % capacity as u64) as usize;
        (0..capacity).map(move |step| (start + step) % capacity)
    }
}

impl AppSlot {
    fn holds(&self, hash: u64, words: &[u64; NAME_WORDS]) -> bool {
        self.hash.load(Ordering::Relaxed) == hash
            && self
                .name
                .iter()
                .zip(words)
                .all(|(word, expected)| word.load(Ordering::Relaxed) == *expected)
    }
}

fn pack_name(name: &[u8]) -> [u64; NAME_WORDS] {
    let mut words = [0u64; NAME_WORDS];
    for (word, chunk) in words.iter_mut().zip(name.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    words
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn table_of(capacity: usize) -> (TableHeader, Vec<AppSlot>) {
        let slots = (0..capacity).map(|_| AppSlot::default()).collect();
        (TableHeader::new(capacity, 1, 0, NameKey([1, 2])), slots)
    }

    #[test]
    fn the_layout_stamp_covers_every_part_of_the_zone() {
        let stamp = layout_stamp();
        let field = |shift: u32| (stamp >> shift) & 0xffff;
        assert_eq!(field(48), LAYOUT_VERSION);
        assert_eq!(field(32), std::mem::size_of::<TableHeader>() as u64);
        assert_eq!(field(16), std::mem::size_of::<AppSlot>() as u64);
        assert_eq!(field(0), std::mem::size_of::<WorkerSlot>() as u64);
    }

    #[test]
    fn the_count_of_paused_apps_never_wraps_below_zero() {
        let (header, slots) = table_of(4);
        let table = AppTable::new(&header, &slots);
        let shop = table.find_or_add(b"shop", || ()).unwrap();
        // Paused behind the table's back (its count not raised), then
        // resumed through the table: the count stays at zero.
        table.state(shop).pause();
        assert!(matches!(table.resume(shop), ResumeOutcome::Resumed { .. }));
        assert!(!header.any_paused());
        assert_eq!(table.pause(shop), PauseOutcome::Paused);
        assert!(header.any_paused(), "one pause is counted again");
        assert!(matches!(table.resume(shop), ResumeOutcome::Resumed { .. }));
        assert!(!header.any_paused());
    }

    #[test]
    fn the_name_key_is_kept_in_the_header() {
        let header = TableHeader::new(1, 1, 0, NameKey([5, 6]));
        assert_eq!(header.name_key(), NameKey([5, 6]));
    }

    #[test]
    fn a_reload_is_told_from_a_stop_by_the_newest_workers() {
        let (header, _) = table_of(1);
        let first = header.begin_configuration(2);
        assert!(
            !header.newer_configuration_runs(first),
            "a stop of the only one"
        );
        let second = header.begin_configuration(70);
        assert!(header.newer_configuration_runs(first), "a reload");
        assert!(!header.newer_configuration_runs(second));
        // The old configuration's workers exiting changes nothing.
        header.worker_exited(first, 0);
        header.worker_exited(first, 1);
        assert!(header.newer_configuration_runs(first));
        // Then nginx stops: the newest workers exit, in any order, and once
        // the last has gone the old ones know it is a stop.
        for worker in (1..70).rev() {
            header.worker_exited(second, worker);
            header.worker_exited(second, worker);
        }
        assert!(
            header.newer_configuration_runs(first),
            "worker 0 still runs"
        );
        header.worker_exited(second, 0);
        assert!(!header.newer_configuration_runs(first));
    }

    #[test]
    fn more_workers_than_counted_are_taken_as_running() {
        let (header, _) = table_of(1);
        let first = header.begin_configuration(1);
        let second = header.begin_configuration(COUNTED_WORKERS + 1);
        for worker in 0..=COUNTED_WORKERS {
            header.worker_exited(second, worker);
        }
        assert!(header.newer_configuration_runs(first));
        header.begin_configuration(COUNTED_WORKERS);
        assert!(header.newer_configuration_runs(second));
    }

    #[test]
    fn apps_lists_every_app_with_a_slot() {
        let (header, slots) = table_of(8);
        let table = AppTable::new(&header, &slots);
        assert_eq!(table.apps().count(), 0);
        let shop = table.find_or_add(b"shop", || ()).unwrap();
        let blog = table.find_or_add(b"blog", || ()).unwrap();
        let mut listed: Vec<AppId> = table.apps().collect();
        listed.sort();
        let mut expected = vec![shop, blog];
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn unknown_apps_are_not_found_and_nothing_is_paused() {
        let (header, slots) = table_of(8);
        let table = AppTable::new(&header, &slots);
        assert_eq!(table.find(b"shop"), None);
        assert!(!table.any_paused());
    }

    #[test]
    fn added_apps_are_found_by_name_with_their_own_state() {
        let (header, slots) = table_of(8);
        let table = AppTable::new(&header, &slots);
        let shop = table.find_or_add(b"shop", || ()).unwrap();
        let blog = table.find_or_add(b"blog", || ()).unwrap();
        assert_ne!(shop, blog);
        assert_eq!(table.find(b"shop"), Some(shop));
        assert_eq!(
            table.find_or_add(b"shop", || panic!("no lock needed")),
            Ok(shop)
        );
        assert_eq!(table.name(blog), b"blog");
        assert_eq!(table.apps_in_use(), 2);

        assert_eq!(table.pause(shop), PauseOutcome::Paused);
        assert!(table.any_paused());
        assert!(table.state(shop).is_paused());
        assert!(!table.state(blog).is_paused());
        assert_eq!(table.resume(blog), ResumeOutcome::NotPaused);
        assert!(table.state(shop).is_paused());
        assert_eq!(table.resume(shop), ResumeOutcome::Resumed { held: 0 });
        assert!(!table.any_paused());
    }

    #[test]
    fn names_that_share_a_prefix_or_differ_in_length_are_distinct() {
        let (header, slots) = table_of(16);
        let table = AppTable::new(&header, &slots);
        let names: [&[u8]; 6] = [
            b"",
            b"a",
            b"a\0",
            b"abcdefgh",
            b"abcdefghi",
            "caf\u{e9} \"x\"".as_bytes(),
        ];
        let ids: Vec<_> = names
            .iter()
            .map(|n| table.find_or_add(n, || ()).unwrap())
            .collect();
        for (name, id) in names.iter().zip(&ids) {
            assert_eq!(table.find(name), Some(*id));
            assert_eq!(&table.name(*id), name);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn the_longest_name_fits_and_longer_ones_are_never_found() {
        let (header, slots) = table_of(4);
        let table = AppTable::new(&header, &slots);
        let longest = vec![b'x'; MAX_APP_NAME_LEN];
        let id = table.find_or_add(&longest, || ()).unwrap();
        assert_eq!(table.name(id), longest);
        assert_eq!(table.find(&[b'x'; MAX_APP_NAME_LEN + 1]), None);
    }

    #[test]
    fn a_full_table_refuses_new_apps_and_keeps_the_old_ones() {
        let (header, slots) = table_of(3);
        let table = AppTable::new(&header, &slots);
        let ids: Vec<_> = (0..3)
            .map(|i| {
                table
                    .find_or_add(format!("app{i}").as_bytes(), || ())
                    .unwrap()
            })
            .collect();
        table.pause(ids[1]);
        assert_eq!(table.find_or_add(b"one too many", || ()), Err(TableFull));
        assert_eq!(table.find(b"one too many"), None);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(table.find(format!("app{i}").as_bytes()), Some(*id));
        }
        assert!(table.state(ids[1]).is_paused());
    }

    #[test]
    fn the_lock_is_taken_only_to_add() {
        let (header, slots) = table_of(4);
        let table = AppTable::new(&header, &slots);
        let mut locks = 0;
        table.find_or_add(b"a", || locks += 1).unwrap();
        table.find_or_add(b"a", || locks += 1).unwrap();
        assert_eq!(locks, 1);
    }

    #[test]
    fn many_apps_fill_a_table_without_collisions_losing_any() {
        let (header, slots) = table_of(1000);
        let table = AppTable::new(&header, &slots);
        for i in 0..1000 {
            table
                .find_or_add(format!("app-{i}").as_bytes(), || ())
                .unwrap();
        }
        for i in 0..1000 {
            let id = table.find(format!("app-{i}").as_bytes()).unwrap();
            assert_eq!(table.name(id), format!("app-{i}").as_bytes());
        }
        assert_eq!(table.find_or_add(b"app-1000", || ()), Err(TableFull));
    }
}
