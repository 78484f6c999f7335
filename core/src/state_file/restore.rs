//! What the pause state of a state file makes of the app table: at a
//! restart, each saved app paused or stopped again (or over, its deadline
//! passed while nginx was down); during a binary upgrade, the table made
//! what the other binary's newer file says.

use std::collections::HashSet;

use crate::app_table::{AppTable, TableHeader};
use crate::ids::{AppId, Millis};
use crate::pause::ResumeOutcome;

use super::{SavedApp, StateFile};

/// What becomes of a saved app when nginx starts at `now` (wall clock, ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Paused (or stopped) again: since how long, and for how much longer.
    /// `clamped`: the file's deadline lay further than the pause can last
    /// (the clock is behind the one that wrote it), and `remaining` is the
    /// bound instead.
    Again {
        stopped: bool,
        paused_for: Millis,
        remaining: Option<Millis>,
        clamped: bool,
    },
    /// Its deadline passed while nginx was down: the pause is over, by
    /// `late` ms.
    Ended { late: Millis },
}

/// The longest a restored pause lasts from its restore: the control
/// endpoint takes a `ttl` of at most a day, and `intermission_max_pause`
/// defaults to ten minutes.
pub const LONGEST_RESTORED_MS: Millis = 24 * 60 * 60 * 1000;

impl SavedApp {
    /// What becomes of this app at `now`. A clock that went backwards
    /// (`since` after `now`) counts as no time passed. The wall clock is
    /// trusted within a bound: a restored pause lasts no longer from now
    /// than it was set to last in all (deadline less since), nor than
    /// `LONGEST_RESTORED_MS`, so a host that boots with its clock behind
    /// does not hold its sites for years.
    pub fn restore_at(&self, now: Millis) -> Restore {
        match self.deadline {
            Some(deadline) if deadline <= now => Restore::Ended {
                late: now - deadline,
            },
            deadline => {
                let bound = deadline.map(|d| d.saturating_sub(self.since).min(LONGEST_RESTORED_MS));
                let remaining = deadline.map(|d| d - now);
                let clamped = remaining.zip(bound).is_some_and(|(left, most)| left > most);
                Restore::Again {
                    stopped: self.stopped,
                    paused_for: now.saturating_sub(self.since),
                    remaining: if clamped { bound } else { remaining },
                    clamped,
                }
            }
        }
    }
}

/// What applying another nginx's state file did to an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Paused,
    Stopped,
    Resumed,
    DeadlineMoved,
}

/// Deadlines closer than this are the same deadline, seen through two
/// conversions between the monotonic and the wall clock.
const DEADLINE_SLACK_MS: u64 = 1_000;

impl TableHeader {
    /// Whether a state file holds a state this zone has not got: a newer
    /// one. Writes follow each other under the writers' lock and each one
    /// counts past the file's generation, so a file as new as this zone's
    /// state is the one it wrote or took, whoever wrote it: the file a
    /// master restored from is no news to its workers (one that starts
    /// after another has changed the zone must not turn it back).
    pub fn state_is_news(&self, file: &StateFile) -> bool {
        file.generation > self.state_generation()
    }
}

impl AppTable<'_> {
    /// Pauses or stops an app as the state file says it was when nginx
    /// stopped (`saved`), at `now` on the monotonic clock and `wall_now` on
    /// the wall clock: with its deadline, and its `since` as saved. What
    /// becomes of it: paused again, or its deadline passed meanwhile.
    pub fn restore(&self, app: AppId, saved: &SavedApp, now: u64, wall_now: u64) -> Restore {
        let restore = saved.restore_at(wall_now);
        if let Restore::Again {
            stopped, remaining, ..
        } = restore
        {
            let deadline = remaining.map(|ms| now.saturating_add(ms));
            if stopped {
                self.stop_until(app, now, deadline);
            } else {
                self.pause_until(app, now, deadline);
            }
            self.state(app)
                .set_restored_since(saved.since.min(wall_now));
        }
        restore
    }

    /// Makes this table's apps what a state file written by another nginx
    /// (the other binary of a binary upgrade) says, at `now` (monotonic)
    /// and `wall_now`: apps paused here and not there are resumed; apps
    /// paused or stopped there are so here, with its deadline. Returns what
    /// changed, app by app, and the names that found no room.
    pub fn apply_state_file(
        &self,
        file: &StateFile,
        now: u64,
        wall_now: u64,
    ) -> (Vec<(AppId, Applied)>, Vec<Vec<u8>>) {
        let mut changed = self.resume_all_but(&file.apps);
        let mut no_room = Vec::new();
        for saved in &file.apps {
            let Ok(app) = self.find_or_add(&saved.name, || ()) else {
                no_room.push(saved.name.clone());
                continue;
            };
            if let Some(applied) = self.apply_saved(app, saved, now, wall_now) {
                changed.push((app, applied));
            }
        }
        (changed, no_room)
    }

    /// Resumes the paused apps that are not in `saved`.
    fn resume_all_but(&self, saved: &[SavedApp]) -> Vec<(AppId, Applied)> {
        let in_file: HashSet<&[u8]> = saved.iter().map(|a| a.name.as_slice()).collect();
        let mut resumed = Vec::new();
        for app in self.apps() {
            if self.state(app).is_paused() && !in_file.contains(self.name(app).as_slice()) {
                if let ResumeOutcome::Resumed { .. } = self.resume(app) {
                    resumed.push((app, Applied::Resumed));
                }
            }
        }
        resumed
    }

    /// Makes `app` what `saved` says at `now`; what changed, if anything.
    fn apply_saved(
        &self,
        app: AppId,
        saved: &SavedApp,
        now: u64,
        wall_now: u64,
    ) -> Option<Applied> {
        let state = self.state(app);
        let (stopped, remaining) = match saved.restore_at(wall_now) {
            Restore::Ended { .. } => {
                return match self.resume(app) {
                    ResumeOutcome::Resumed { .. } => Some(Applied::Resumed),
                    ResumeOutcome::NotPaused => None,
                };
            }
            Restore::Again {
                stopped, remaining, ..
            } => (stopped, remaining),
        };
        let deadline = remaining.map(|ms| now.saturating_add(ms));
        let applied = if !state.is_paused() {
            self.restore(app, saved, now, wall_now);
            Some(if stopped {
                Applied::Stopped
            } else {
                Applied::Paused
            })
        } else if stopped && !state.is_stopped() {
            self.stop_until(app, now, deadline);
            Some(Applied::Stopped)
        } else if !stopped && state.is_stopped() {
            self.pause_until(app, now, deadline);
            Some(Applied::Paused)
        } else {
            None
        };
        // The two clocks are converted both ways: a deadline within a
        // second of the file's is the same one.
        let moved = state.deadline().map_or(deadline.is_some(), |d| {
            deadline.is_none_or(|want| d.abs_diff(want) > DEADLINE_SLACK_MS)
        }) && state.move_deadline(deadline);
        applied.or(moved.then_some(Applied::DeadlineMoved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_table::tests::table_of;
    use crate::in_flight::NameKey;

    #[test]
    fn a_clock_behind_the_files_restores_no_more_than_the_pause_was_set_for() {
        let paused = |since, deadline| SavedApp {
            name: b"shop".to_vec(),
            stopped: false,
            since,
            deadline: Some(deadline),
        };
        // Set for 60 s at 1,000,000; restored 10 s later: 50 s left.
        assert_eq!(
            paused(1_000_000, 1_060_000).restore_at(1_010_000),
            Restore::Again {
                stopped: false,
                paused_for: 10_000,
                remaining: Some(50_000),
                clamped: false
            }
        );
        // Restored by a clock five years behind: 60 s, not five years.
        let five_years = 5 * 365 * LONGEST_RESTORED_MS;
        assert_eq!(
            paused(five_years, five_years + 60_000).restore_at(1_000),
            Restore::Again {
                stopped: false,
                paused_for: 0,
                remaining: Some(60_000),
                clamped: true
            }
        );
        // A file whose pause claims to last years: a day at most.
        match paused(0, five_years).restore_at(1) {
            Restore::Again {
                remaining, clamped, ..
            } => assert_eq!((remaining, clamped), (Some(LONGEST_RESTORED_MS), true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deadline_that_passed_while_down_ends_the_pause() {
        let paused = SavedApp {
            name: b"a".to_vec(),
            stopped: false,
            since: 1_000,
            deadline: Some(5_000),
        };
        assert_eq!(
            paused.restore_at(4_000),
            Restore::Again {
                stopped: false,
                paused_for: 3_000,
                remaining: Some(1_000),
                clamped: false
            }
        );
        assert_eq!(paused.restore_at(5_000), Restore::Ended { late: 0 });
        assert_eq!(paused.restore_at(9_000), Restore::Ended { late: 4_000 });
        let stopped = SavedApp {
            stopped: true,
            deadline: None,
            ..paused
        };
        assert_eq!(
            stopped.restore_at(500),
            Restore::Again {
                stopped: true,
                paused_for: 0,
                remaining: None,
                clamped: false
            }
        );
    }

    #[test]
    fn a_state_is_news_only_if_newer() {
        let header = TableHeader::new(1, 1, 0xaa, NameKey([1, 2]));
        let file = |generation, writer| StateFile {
            saved: 1,
            generation,
            writer,
            apps: vec![],
        };
        assert_eq!(header.next_state_generation(None), 1);
        assert_eq!(
            header.next_state_generation(Some(6)),
            7,
            "past the file's too"
        );
        header.adopt_state_generation(7);
        assert!(!header.state_is_news(&file(6, 0xbb)));
        assert!(!header.state_is_news(&file(7, 0xaa)), "its own write");
        assert!(
            !header.state_is_news(&file(7, 0xbb)),
            "as new, from the file it took or restored from"
        );
        assert!(header.state_is_news(&file(8, 0xbb)), "the other binary's");
        assert!(header.state_is_news(&file(8, 0xaa)));
        header.adopt_state_generation(3);
        assert_eq!(header.state_generation(), 7, "never back");
        header.adopt_state_generation(i64::MAX as u64);
        assert_eq!(header.next_state_generation(None), i64::MAX as u64 + 1);
    }

    #[test]
    fn another_nginx_state_file_is_applied_app_by_app() {
        let (header, slots) = table_of(8);
        let table = AppTable::new(&header, &slots);
        let (now, wall_now) = (50, 1_010_000);
        let saved = |name: &[u8], stopped, deadline| SavedApp {
            name: name.to_vec(),
            stopped,
            since: 1_000_000,
            deadline,
        };
        let id = |name: &[u8]| table.find_or_add(name, || ()).unwrap();
        // Here: a and b paused, c stopped, d running.
        table.pause_until(id(b"a"), 10, None);
        table.pause_until(id(b"b"), 10, Some(100_000));
        table.stop_until(id(b"c"), 10, None);
        id(b"d");
        let file = StateFile {
            saved: wall_now,
            generation: 2,
            writer: 9,
            apps: vec![
                // b: the same pause, its deadline moved by a ttl.
                saved(b"b", false, Some(1_310_000)),
                // c: paused there (an enable on the stopped app).
                saved(b"c", false, None),
                // d: stopped there.
                saved(b"d", true, Some(1_070_000)),
                // e: new, paused there.
                saved(b"e", false, None),
                // f: its deadline passed.
                saved(b"f", false, Some(1_000_500)),
            ],
        };
        let (changed, no_room) = table.apply_state_file(&file, now, wall_now);
        assert!(no_room.is_empty());
        let mut changed: Vec<(Vec<u8>, Applied)> = changed
            .into_iter()
            .map(|(app, what)| (table.name(app), what))
            .collect();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            changed,
            vec![
                (b"a".to_vec(), Applied::Resumed),
                (b"b".to_vec(), Applied::DeadlineMoved),
                (b"c".to_vec(), Applied::Paused),
                (b"d".to_vec(), Applied::Stopped),
                (b"e".to_vec(), Applied::Paused),
            ]
        );
        let state = |name: &[u8]| table.state(table.find(name).unwrap());
        assert!(!state(b"a").is_paused());
        assert_eq!(state(b"b").deadline(), Some(300_050));
        assert!(state(b"c").is_paused() && !state(b"c").is_stopped());
        assert!(state(b"d").is_stopped());
        assert_eq!(state(b"d").deadline(), Some(60_050));
        assert!(state(b"e").is_paused());
        assert!(!state(b"f").is_paused());

        // The same file again changes nothing.
        let (changed, _) = table.apply_state_file(&file, now, wall_now);
        assert!(changed.is_empty(), "{changed:?}");
        // An empty one resumes everything.
        let empty = StateFile {
            saved: wall_now,
            generation: 3,
            writer: 9,
            apps: vec![],
        };
        let (changed, _) = table.apply_state_file(&empty, now, wall_now);
        assert_eq!(changed.len(), 4);
        assert!(!header.any_paused());
    }

    #[test]
    fn a_restored_app_is_paused_or_stopped_with_its_deadline_and_since() {
        let (header, slots) = table_of(8);
        let table = AppTable::new(&header, &slots);
        let saved = |name: &[u8], stopped, deadline| SavedApp {
            name: name.to_vec(),
            stopped,
            since: 1_000_000,
            deadline,
        };
        // Wall clock 1,010,000 is monotonic 50 here.
        let (now, wall_now) = (50, 1_010_000);
        let paused = table.find_or_add(b"paused", || ()).unwrap();
        let outcome = table.restore(
            paused,
            &saved(b"paused", false, Some(1_070_000)),
            now,
            wall_now,
        );
        assert_eq!(
            outcome,
            Restore::Again {
                stopped: false,
                paused_for: 10_000,
                remaining: Some(60_000),
                clamped: false
            }
        );
        let state = table.state(paused);
        assert!(state.is_paused() && !state.is_stopped());
        assert_eq!(state.deadline(), Some(60_050));
        assert_eq!(state.restored_since(), Some(1_000_000));

        let stopped = table.find_or_add(b"stopped", || ()).unwrap();
        table.restore(stopped, &saved(b"stopped", true, None), now, wall_now);
        assert!(table.state(stopped).is_stopped());
        assert_eq!(table.state(stopped).deadline(), None);

        let ended = table.find_or_add(b"ended", || ()).unwrap();
        let outcome = table.restore(
            ended,
            &saved(b"ended", false, Some(1_004_000)),
            now,
            wall_now,
        );
        assert_eq!(outcome, Restore::Ended { late: 6_000 });
        assert!(!table.state(ended).is_paused());
        assert!(header.any_paused());

        // A new pause is this zone's own: no restored `since`.
        table.resume(paused);
        table.pause_until(paused, 70, None);
        assert_eq!(table.state(paused).restored_since(), None);
        table.resume(paused);
        table.resume(stopped);
        assert!(!header.any_paused(), "the count of paused apps is in step");
    }
}
