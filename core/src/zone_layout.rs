//! How the shared zone is divided: the table header, then the worker slots
//! (`worker_slots`), then the app slots (`app_table`). The module places
//! them at these offsets in nginx's shared memory; the unit tests on the
//! heap.

use std::mem::{align_of, size_of};

use crate::app_table::{AppSlot, TableHeader};
use crate::worker_slots::WorkerSlot;

/// The share of the zone given to worker slots: a quarter. A 1 MB zone has
/// 53 of them, enough for 26 worker processes through a reload whose old
/// workers still hold requests.
const WORKER_SLOT_SHARE: usize = 4;

/// Worker slots of the smallest zone: the shared one and two of their own
/// (workers beyond them count in the shared one; see `worker_slots`).
pub const MIN_WORKER_SLOTS: usize = 3;

const MAX_WORKER_SLOTS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneLayout {
    /// Worker slots, the shared one included.
    pub worker_slots: usize,
    /// App slots.
    pub apps: usize,
}

impl ZoneLayout {
    /// How `bytes` of zone are divided; `None` if they do not hold the
    /// header, the smallest number of worker slots and one app.
    pub fn for_bytes(bytes: usize) -> Option<ZoneLayout> {
        let body = bytes.checked_sub(size_of::<TableHeader>())?;
        let worker_slots = (body / WORKER_SLOT_SHARE / size_of::<WorkerSlot>())
            .clamp(MIN_WORKER_SLOTS, MAX_WORKER_SLOTS);
        let apps = body.checked_sub(worker_slots * size_of::<WorkerSlot>())? / size_of::<AppSlot>();
        (apps > 0).then_some(ZoneLayout { worker_slots, apps })
    }

    /// The bytes this layout takes.
    pub fn bytes(&self) -> usize {
        self.apps_offset() + self.apps * size_of::<AppSlot>()
    }

    pub fn worker_slots_offset(&self) -> usize {
        size_of::<TableHeader>()
    }

    pub fn apps_offset(&self) -> usize {
        self.worker_slots_offset() + self.worker_slots * size_of::<WorkerSlot>()
    }

    /// The smallest zone that holds `worker_slots` worker slots and one app
    /// (for the message that asks for a larger zone).
    pub fn bytes_for_workers(worker_slots: usize) -> usize {
        size_of::<TableHeader>()
            + worker_slots * size_of::<WorkerSlot>() * WORKER_SLOT_SHARE
            + size_of::<AppSlot>()
    }
}

// The parts follow each other without padding.
const _: () = assert!(size_of::<TableHeader>() % align_of::<WorkerSlot>() == 0);
const _: () = assert!(size_of::<WorkerSlot>() % align_of::<AppSlot>() == 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_is_divided_into_header_workers_and_apps() {
        let layout = ZoneLayout::for_bytes(1024 * 1024).unwrap();
        assert!(layout.worker_slots >= 40, "{layout:?}");
        assert!(layout.apps > 2_000, "{layout:?}");
        assert!(layout.bytes() <= 1024 * 1024);
        assert_eq!(layout.worker_slots_offset(), size_of::<TableHeader>());
        assert!(layout.apps_offset() < layout.bytes());
    }

    #[test]
    fn a_small_zone_keeps_the_smallest_number_of_worker_slots() {
        let layout = ZoneLayout::for_bytes(32 * 1024).unwrap();
        assert_eq!(layout.worker_slots, MIN_WORKER_SLOTS);
        assert!(layout.apps > 0);
        assert!(layout.bytes() <= 32 * 1024);
        assert_eq!(ZoneLayout::for_bytes(size_of::<TableHeader>()), None);
        assert_eq!(ZoneLayout::for_bytes(0), None);
    }

    #[test]
    fn the_zone_for_a_number_of_workers_has_that_many_slots() {
        for workers in [3, 16, 100] {
            let bytes = ZoneLayout::bytes_for_workers(workers);
            assert!(ZoneLayout::for_bytes(bytes).unwrap().worker_slots >= workers);
        }
    }
}
