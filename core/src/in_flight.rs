//! Requests in flight: let through to the upstream while their app was
//! running, and not finished yet. A drain (`enable?drain=...`) waits for an
//! app's count to reach zero.
//!
//! Each worker counts in its own slot (`worker_slots`), so a worker that is
//! killed takes its counts with it when its slot is reclaimed, and no two
//! workers ever write the same counter. Within a slot the counts are kept per
//! app, in a small table of entries keyed by a hash of the app name. Not in
//! the app table: an app enters it at its first pause, but the requests a
//! first drain must wait for were let through before that, and counting
//! there would let any `$app_name` ever seen (a `$host`, say) fill it.
//!
//! **No client can aim at another app's count.** `$app_name` often comes from
//! the request, so the hash is keyed with a secret drawn as the zone is
//! created (SipHash-1-3, 128-bit key): names chosen to share an app's entry
//! cannot be found from outside, and two apps share an entry only if their
//! 64-bit keyed hashes are equal.
//!
//! **An entry is reused once its app has nothing in flight**, by the slot's
//! owner alone (the shared slot never reuses one), so the table holds the
//! apps a worker has in flight *at once*. When all of them are taken, a
//! request is counted in the overflow entry, which every app's count
//! includes: a drain then waits a little longer, never shorter.
//!
//! **Switched protocols.** A request whose upstream answered 101 (a
//! WebSocket) may run for hours; it moves from the in-flight count to the
//! `upgraded` count of its entry, which drains do not wait for.
//!
//! **Counting the same name again is cheap.** Most configurations name an
//! app with a constant, so a worker keeps memos (`NameMemos`) of names it
//! counted: each a name's bytes, its keyed hash and its entry. A request
//! whose name equals its memo's, byte for byte, skips the hash and the
//! probe; the entry's key is read again before the add (one load), since
//! the entry may have gone to another app since. Any other name is hashed
//! and probed as below and takes the memo's place. Which of the 64 memos a
//! name uses goes by its length and three of its bytes, so that the few
//! apps of a site seldom share one. The memos change how fast a name is
//! counted, never where: a client that sends names of its choosing can at
//! most make requests take the longer way.
//!
//! Counting is then a comparison of the name with its memo's, one load of
//! the entry's key and one atomic add on the worker's own slot; or, for a
//! name not in its memo, a keyed hash of the name and a probe that usually
//! ends at the first entry, and the add.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use siphasher::sip::SipHasher13;

use crate::ids::MAX_APP_NAME_LEN;

/// Entries per worker slot, the overflow entry included: the apps a worker
/// can count apart at once.
pub const IN_FLIGHT_ENTRIES: usize = 256;

/// The entry every app's count includes.
const OVERFLOW: usize = 0;

/// The secret that keys the hash of app names; drawn as the zone is created
/// and kept in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameKey(pub [u64; 2]);

impl NameKey {
    /// The keyed hash of an app name; never 0 (0 marks an unused entry).
    #[inline]
    pub fn app_key(&self, app_name: &[u8]) -> AppKey {
        let mut hasher = SipHasher13::new_with_keys(self.0[0], self.0[1]);
        hasher.write(app_name);
        AppKey(hasher.finish().max(1))
    }
}

/// An app, as its in-flight entries know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppKey(u64);

/// The entry that counted a request, for its end to count it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InFlightCounter(pub u16);

impl InFlightCounter {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// How a request is counted in flight: by which counter, and whether it
/// switched protocols since it was let through. The module keeps it in the
/// request as text (`text`, read back by `of_text`): a request's variables
/// are the one place that survives its internal redirects at no cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub counter: InFlightCounter,
    pub upgraded: bool,
}

/// The suffix of the text of an upgraded request's `Counted`.
const UPGRADED: &[u8] = b" upgraded";

const DIGITS: usize = 3;
const _: () = assert!(
    IN_FLIGHT_ENTRIES <= 1000,
    "a counter is written in three digits"
);

/// Every counter's number in three digits, followed by `UPGRADED`: the
/// texts of `Counted`, with no allocation.
static COUNTED_TEXTS: [[u8; DIGITS + UPGRADED.len()]; IN_FLIGHT_ENTRIES] = counted_texts();

const fn counted_texts() -> [[u8; DIGITS + UPGRADED.len()]; IN_FLIGHT_ENTRIES] {
    let mut texts = [[0; DIGITS + UPGRADED.len()]; IN_FLIGHT_ENTRIES];
    let mut counter = 0;
    while counter < IN_FLIGHT_ENTRIES {
        let text = &mut texts[counter];
        text[0] = b'0' + (counter / 100) as u8;
        text[1] = b'0' + (counter / 10 % 10) as u8;
        text[2] = b'0' + (counter % 10) as u8;
        let mut i = 0;
        while i < UPGRADED.len() {
            text[DIGITS + i] = UPGRADED[i];
            i += 1;
        }
        counter += 1;
    }
    texts
}

impl Counted {
    pub fn by(counter: InFlightCounter) -> Self {
        Counted {
            counter,
            upgraded: false,
        }
    }

    /// This as text: the counter's number in three digits, then
    /// " upgraded" if the request switched protocols.
    pub fn text(self) -> &'static [u8] {
        let text = &COUNTED_TEXTS[self.counter.index() % IN_FLIGHT_ENTRIES];
        if self.upgraded {
            text
        } else {
            &text[..DIGITS]
        }
    }

    /// The `Counted` whose `text` is `text`, if it is one.
    #[inline]
    pub fn of_text(text: &[u8]) -> Option<Counted> {
        // The module reads back the very text `text` gave, a row of
        // `COUNTED_TEXTS` or its digits: where it starts in the table is
        // the counter, with no digit to read. A text anywhere else (a
        // copy) is read digit by digit.
        const ROW: usize = DIGITS + UPGRADED.len();
        let offset = (text.as_ptr() as usize).wrapping_sub(COUNTED_TEXTS.as_ptr() as usize);
        if offset < IN_FLIGHT_ENTRIES * ROW
            && offset % ROW == 0
            && (text.len() == DIGITS || text.len() == ROW)
        {
            return Some(Counted {
                counter: InFlightCounter((offset / ROW) as u16),
                upgraded: text.len() == ROW,
            });
        }
        Self::of_copied_text(text)
    }

    #[cold]
    fn of_copied_text(text: &[u8]) -> Option<Counted> {
        let (digits, rest) = text.split_at_checked(DIGITS)?;
        let upgraded = match rest {
            [] => false,
            UPGRADED => true,
            _ => return None,
        };
        let counter = digits.iter().try_fold(0usize, |n, &digit| {
            digit
                .is_ascii_digit()
                .then(|| n * 10 + usize::from(digit - b'0'))
        })?;
        (counter < IN_FLIGHT_ENTRIES).then_some(Counted {
            counter: InFlightCounter(counter as u16),
            upgraded,
        })
    }
}

/// One app's counts in one slot.
#[repr(C)]
#[derive(Debug, Default)]
struct Entry {
    /// The app's `AppKey`; 0 if the entry was never used.
    key: AtomicU64,
    in_flight: AtomicU32,
    upgraded: AtomicU32,
}

impl Entry {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.upgraded.load(Ordering::Relaxed) == 0
    }
}

/// An app's counts, summed over the slots read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Ordinary requests not finished yet: what a drain waits for.
    pub requests: u64,
    /// Requests that switched protocols (101), still open.
    pub upgraded: u64,
}

impl std::ops::AddAssign for InFlight {
    fn add_assign(&mut self, other: InFlight) {
        self.requests += other.requests;
        self.upgraded += other.upgraded;
    }
}

/// The in-flight counts of one worker slot.
#[repr(C)]
#[derive(Debug)]
pub struct InFlightTable {
    entries: [Entry; IN_FLIGHT_ENTRIES],
}

impl Default for InFlightTable {
    fn default() -> Self {
        InFlightTable {
            entries: std::array::from_fn(|_| Entry::default()),
        }
    }
}

impl InFlightTable {
    /// Counts a request of `app` in. `own`: only the caller's process writes
    /// this table, so an entry whose app has nothing counted may be given to
    /// another app; else (the shared slot) entries are only claimed.
    #[inline]
    pub fn enter(&self, app: AppKey, own: bool) -> InFlightCounter {
        self.count_in(self.entry_for(app, own))
    }

    /// As `enter` for the app named `name` under `secret`
    /// (`secret.app_key(name)`), counted in the same entry, with `memos`
    /// sparing the hash and the probe when `name` is in its memo. Always
    /// inlined: its caller is every request's path.
    #[inline(always)]
    pub fn enter_named(
        &self,
        memos: &mut NameMemos,
        secret: NameKey,
        name: &[u8],
        own: bool,
    ) -> InFlightCounter {
        let memo = memos.for_name(name);
        if !memo.holds(secret, name) {
            memo.remember(secret, name);
        }
        // The entry found last time is the app's if it bears the app's key:
        // an app has at most one entry in a table, since a probe ends at
        // the app's entry before it claims another (see `entry_for`). It
        // may not: a probe for another name gives an idle entry away, and
        // the memo may come from another table (a process counting in
        // another slot). Only this process gives an entry of its own slot
        // to another app, so the key cannot change between this load and
        // the add; the shared slot never gives one away.
        let hint = memo.entry % IN_FLIGHT_ENTRIES;
        let index =
            if hint != OVERFLOW && self.entries[hint].key.load(Ordering::Acquire) == memo.app.0 {
                hint
            } else {
                let index = self.entry_for(memo.app, own);
                memo.entry = index;
                index
            };
        self.count_in(index)
    }

    #[inline]
    fn count_in(&self, index: usize) -> InFlightCounter {
        // SeqCst, as the key's store and the drain's reads: see
        // `AppState::phase_now`.
        self.entries[index].in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightCounter(index as u16)
    }

    /// A request counted by `enter` switched protocols: it leaves the count
    /// a drain waits for, and is counted as upgraded until it ends.
    pub fn upgrade(&self, counter: InFlightCounter) {
        let entry = &self.entries[counter.index() % IN_FLIGHT_ENTRIES];
        entry.upgraded.fetch_add(1, Ordering::Relaxed);
        decrement(&entry.in_flight);
    }

    /// A request counted by `enter` (and `upgraded`, if it switched
    /// protocols) is finished. Never below zero.
    #[inline]
    pub fn leave(&self, counter: InFlightCounter, upgraded: bool) {
        let entry = &self.entries[counter.index() % IN_FLIGHT_ENTRIES];
        decrement(if upgraded {
            &entry.upgraded
        } else {
            &entry.in_flight
        });
    }

    /// `app`'s counts in this table, the overflow entry's included.
    pub fn count(&self, app: AppKey) -> InFlight {
        let mut total = InFlight::default();
        for (index, entry) in self.entries.iter().enumerate() {
            if index == OVERFLOW || entry.key.load(Ordering::SeqCst) == app.0 {
                total += InFlight {
                    requests: u64::from(entry.in_flight.load(Ordering::SeqCst)),
                    upgraded: u64::from(entry.upgraded.load(Ordering::Relaxed)),
                };
            }
        }
        total
    }

    /// Every app's counts in this table, summed.
    pub fn total(&self) -> InFlight {
        let mut total = InFlight::default();
        for entry in &self.entries {
            total += InFlight {
                requests: u64::from(entry.in_flight.load(Ordering::Relaxed)),
                upgraded: u64::from(entry.upgraded.load(Ordering::Relaxed)),
            };
        }
        total
    }

    /// Forgets everything (the slot is being reclaimed and is not read).
    pub fn clear(&self) {
        for entry in &self.entries {
            entry.key.store(0, Ordering::Relaxed);
            entry.in_flight.store(0, Ordering::Relaxed);
            entry.upgraded.store(0, Ordering::Relaxed);
        }
    }

    /// The entry that counts `app`: its own, else one claimed for it, else
    /// the overflow entry. Probing starts at the key's place and ends at
    /// the first entry never used: keys are never removed (only replaced
    /// where nothing is counted), so an app's entry is never past one.
    /// Out of line: `enter_named` seldom needs it.
    #[inline(never)]
    fn entry_for(&self, app: AppKey, own: bool) -> usize {
        let places = IN_FLIGHT_ENTRIES - 1;
        let start = (app.0 % places as u64) as usize;
        let mut reusable = None;
        for step in 0..places {
            let index = 1 + (start + step) % places;
            let entry = &self.entries[index];
            let key = entry.key.load(Ordering::Acquire);
            if key == app.0 {
                return index;
            }
            if key == 0 {
                if own {
                    let index = reusable.unwrap_or(index);
                    self.entries[index].key.store(app.0, Ordering::SeqCst);
                    return index;
                }
                // Shared by several processes: claim it, unless another
                // claimed it first (perhaps for this very app).
                match entry
                    .key
                    .compare_exchange(0, app.0, Ordering::SeqCst, Ordering::Acquire)
                {
                    Ok(_) => return index,
                    Err(seen) if seen == app.0 => return index,
                    Err(_) => continue,
                }
            }
            if own && reusable.is_none() && entry.is_idle() {
                reusable = Some(index);
            }
        }
        match reusable {
            Some(index) => {
                self.entries[index].key.store(app.0, Ordering::SeqCst);
                index
            }
            None => OVERFLOW,
        }
    }
}

/// How many names a worker remembers (`NameMemos`).
pub const NAME_MEMOS: usize = 64;

/// The names a worker counted last, for `InFlightTable::enter_named`: plain
/// data, written by one worker for itself.
#[derive(Clone, Debug)]
pub struct NameMemos([NameMemo; NAME_MEMOS]);

impl Default for NameMemos {
    fn default() -> Self {
        Self::new()
    }
}

impl NameMemos {
    /// Memos that remember nothing.
    pub const fn new() -> Self {
        NameMemos([const { NameMemo::new() }; NAME_MEMOS])
    }

    /// The memo `name` is looked for in and remembered in: chosen by its
    /// length and its first, middle and last bytes, with odd weights, so
    /// that names that differ in one of them (`shop` and `blog`, `app1` and
    /// `app2`, `www.shop.example` and `www.blog.example`) take different
    /// memos. Only a choice: a memo is compared by content, so names that
    /// share one only take turns with it.
    #[inline(always)]
    fn for_name(&mut self, name: &[u8]) -> &mut NameMemo {
        let byte = |at: usize| name.get(at).map_or(0, |&b| usize::from(b));
        let len = name.len();
        let picked = len + 31 * byte(0) + 7 * byte(len / 2) + 3 * byte(len.wrapping_sub(1));
        &mut self.0[picked % NAME_MEMOS]
    }
}

const _: () = assert!(NAME_MEMOS.is_power_of_two());

/// An app name a worker counted, its keyed hash and the entry that counted
/// it: what `InFlightTable::enter_named` needs not work out again for the
/// next request of the same name. Compared by content (the bytes of the
/// name and the secret), never by address: a name taken from a request may
/// sit where another request's different name sat.
#[derive(Clone, Debug)]
struct NameMemo {
    secret: NameKey,
    /// The name's length; more than `MAX_APP_NAME_LEN` while nothing is
    /// remembered.
    len: usize,
    name: [u8; MAX_APP_NAME_LEN],
    app: AppKey,
    /// Where the app was counted last; checked before use.
    entry: usize,
}

impl NameMemo {
    /// A memo that remembers nothing.
    const fn new() -> Self {
        NameMemo {
            secret: NameKey([0, 0]),
            len: usize::MAX,
            name: [0; MAX_APP_NAME_LEN],
            app: AppKey(0),
            entry: OVERFLOW,
        }
    }

    /// Whether this remembers `name` under `secret`.
    #[inline]
    fn holds(&self, secret: NameKey, name: &[u8]) -> bool {
        self.len == name.len() && self.name.get(..name.len()) == Some(name) && self.secret == secret
    }

    /// Remembers `name` under `secret` (a name too long to be an app's is
    /// hashed, and forgotten at once).
    #[cold]
    #[inline(never)]
    fn remember(&mut self, secret: NameKey, name: &[u8]) {
        self.app = secret.app_key(name);
        self.secret = secret;
        self.entry = OVERFLOW;
        match self.name.get_mut(..name.len()) {
            Some(room) => {
                room.copy_from_slice(name);
                self.len = name.len();
            }
            None => self.len = usize::MAX,
        }
    }
}

fn decrement(count: &AtomicU32) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: NameKey = NameKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);

    #[test]
    fn the_key_depends_on_the_name_and_the_secret() {
        assert_eq!(KEY.app_key(b"shop"), KEY.app_key(b"shop"));
        assert_ne!(KEY.app_key(b"shop"), KEY.app_key(b"blog"));
        let other = NameKey([1, 2]);
        assert_ne!(KEY.app_key(b"shop"), other.app_key(b"shop"));
    }

    #[test]
    fn apps_are_counted_apart_and_never_below_zero() {
        let table = InFlightTable::default();
        let (shop, blog) = (KEY.app_key(b"shop"), KEY.app_key(b"blog"));
        let a = table.enter(shop, true);
        let b = table.enter(shop, true);
        assert_eq!(a, b);
        let c = table.enter(blog, true);
        assert_ne!(a, c);
        assert_eq!(table.count(shop).requests, 2);
        assert_eq!(table.count(blog).requests, 1);
        table.leave(c, false);
        table.leave(c, false);
        assert_eq!(table.count(blog), InFlight::default());
        assert_eq!(table.count(shop).requests, 2);
        assert_eq!(table.total().requests, 2);
    }

    #[test]
    fn an_upgraded_request_leaves_the_drained_count() {
        let table = InFlightTable::default();
        let shop = KEY.app_key(b"shop");
        let ws = table.enter(shop, true);
        let _plain = table.enter(shop, true);
        table.upgrade(ws);
        assert_eq!(
            table.count(shop),
            InFlight {
                requests: 1,
                upgraded: 1
            }
        );
        table.leave(ws, true);
        assert_eq!(table.count(shop).upgraded, 0);
        assert_eq!(table.count(shop).requests, 1);
    }

    #[test]
    fn an_idle_entry_is_reused_and_a_full_table_overflows_into_every_count() {
        let table = InFlightTable::default();
        let keys: Vec<AppKey> = (0..IN_FLIGHT_ENTRIES - 1)
            .map(|i| KEY.app_key(format!("app{i}").as_bytes()))
            .collect();
        let counters: Vec<InFlightCounter> = keys.iter().map(|&k| table.enter(k, true)).collect();
        let mut distinct = counters.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), keys.len(), "one entry each");
        assert!(!counters.contains(&InFlightCounter(OVERFLOW as u16)));

        // Full: a new app overflows, and every app's count includes it.
        let late = KEY.app_key(b"late");
        let overflowed = table.enter(late, true);
        assert_eq!(overflowed, InFlightCounter(OVERFLOW as u16));
        assert_eq!(table.count(keys[0]).requests, 2);
        assert_eq!(table.count(late).requests, 1);
        table.leave(overflowed, false);

        // One app finishes: its entry goes to the next new app.
        table.leave(counters[7], false);
        let again = table.enter(late, true);
        assert_eq!(again, counters[7]);
        assert_eq!(table.count(keys[7]).requests, 0);
        assert_eq!(table.count(late).requests, 1);
        // The other apps still find their own entries.
        for (key, counter) in keys.iter().zip(&counters).skip(8) {
            assert_eq!(table.enter(*key, true), *counter);
        }
    }

    #[test]
    fn a_counted_request_reads_back_from_its_text() {
        for index in [0u16, 1, 9, 10, 117, IN_FLIGHT_ENTRIES as u16 - 1] {
            for upgraded in [false, true] {
                let counted = Counted {
                    counter: InFlightCounter(index),
                    upgraded,
                };
                let text = counted.text();
                assert_eq!(Counted::of_text(text), Some(counted));
                let copy = text.to_vec();
                assert_eq!(Counted::of_text(&copy), Some(counted), "by content");
            }
        }
        assert_eq!(Counted::by(InFlightCounter(7)).text(), b"007");
        assert_eq!(
            Counted {
                counter: InFlightCounter(117),
                upgraded: true
            }
            .text(),
            b"117 upgraded"
        );
        // Inside the table but not a text `text` gives: read by content.
        let row = Counted {
            counter: InFlightCounter(117),
            upgraded: true,
        }
        .text();
        assert_eq!(Counted::of_text(&row[1..4]), None, "\"17 \"");
        assert_eq!(Counted::of_text(&row[..4]), None, "\"117 \"");
        assert_eq!(Counted::of_text(&row[..0]), None);
        let next = Counted::by(InFlightCounter(118)).text();
        assert_eq!(
            Counted::of_text(next),
            Some(Counted::by(InFlightCounter(118)))
        );
        for bad in [
            &b""[..],
            b"07",
            b"0070",
            b"256",
            b"999",
            b"-01",
            b"007 upgrade",
            b"007upgraded",
            b"passed",
        ] {
            assert_eq!(
                Counted::of_text(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_shared_slot_only_claims_entries() {
        let table = InFlightTable::default();
        let shop = KEY.app_key(b"shop");
        let a = table.enter(shop, false);
        table.leave(a, false);
        let blog = KEY.app_key(b"blog");
        let b = table.enter(blog, false);
        assert_ne!(a, b, "an idle entry of the shared slot stays its app's");
        assert_eq!(table.enter(shop, false), a);
    }
}
