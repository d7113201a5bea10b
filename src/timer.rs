//! A hierarchical timer wheel, and the clock it runs on. It drives the compaction thread.
//!
//! Six levels of 64 slots at 1 ms resolution: level `l` slots span `64^l` ms, so the wheel
//! covers about 2^35 ms (a year) ahead; farther deadlines wait in an overflow list until
//! they come into range. Each level keeps a 64-bit occupancy
//! bitmap, so finding the next expiry costs one rotate and one `trailing_zeros` per level.
//! When time reaches a slot of a higher level, its entries cascade into lower levels.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds on a monotonic clock.
pub(crate) type Millis = u64;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = (SLOTS as u64) - 1;
/// Span of the whole wheel (one rotation of the top level).
const HORIZON: u64 = (1 << (SLOT_BITS as usize * LEVELS)) - 1;
/// Farthest a deadline is placed ahead of the wheel's time: half a top-level rotation, so
/// a parked entry never shares the current top-level slot.
const PARK: u64 = 1 << (SLOT_BITS as usize * LEVELS - 1);

#[derive(Debug)]
struct Entry<T> {
    deadline: Millis,
    seq: u64,
    item: T,
}

/// Items scheduled at millisecond deadlines.
#[derive(Debug)]
pub(crate) struct TimerWheel<T> {
    elapsed: Millis,
    slots: Vec<Vec<Entry<T>>>,
    occupied: [u64; LEVELS],
    /// Due entries: they fire on the next poll.
    ready: Vec<Entry<T>>,
    /// Entries too far ahead for the wheel, until they come within range.
    overflow: Vec<Entry<T>>,
    seq: u64,
    len: usize,
}

fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

/// The level whose slots separate `when` from `elapsed` (tokio's rule).
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = ((elapsed ^ when) | SLOT_MASK).min(HORIZON - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose time starts at `now`.
    pub(crate) fn new(now: Millis) -> Self {
        TimerWheel {
            elapsed: now,
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            ready: Vec::new(),
            overflow: Vec::new(),
            seq: 0,
            len: 0,
        }
    }

    /// Number of pending items.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Schedules `item` at `deadline`; a deadline already past fires on the next poll.
    pub(crate) fn insert(&mut self, deadline: Millis, item: T) {
        self.seq += 1;
        self.len += 1;
        let e = Entry {
            deadline,
            seq: self.seq,
            item,
        };
        self.place(e);
    }

    /// Puts an entry in the ready list, the slot its deadline maps to, or the overflow.
    fn place(&mut self, e: Entry<T>) {
        if e.deadline <= self.elapsed {
            self.ready.push(e);
        } else if e.deadline - self.elapsed > PARK {
            self.overflow.push(e);
        } else {
            let level = level_for(self.elapsed, e.deadline);
            let slot = ((e.deadline >> (SLOT_BITS as usize * level)) & SLOT_MASK) as usize;
            self.slots[level * SLOTS + slot].push(e);
            self.occupied[level] |= 1 << slot;
        }
    }

    /// The next slot to expire: (level, slot, the time the slot starts).
    fn next_expiration(&self) -> Option<(usize, usize, Millis)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let range = slot_range(level);
            let level_range = range << SLOT_BITS;
            let now_slot = ((self.elapsed / range) & SLOT_MASK) as u32;
            let slot =
                ((occupied.rotate_right(now_slot).trailing_zeros() + now_slot) as usize) % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut start = level_start + slot as u64 * range;
            if start + range <= self.elapsed {
                // The slot lies in the next rotation of this level.
                start += level_range;
            }
            return Some((level, slot, start));
        }
        None
    }

    /// Advances to `now` and returns every item due (deadline <= now), earliest first
    /// (ties in insertion order).
    pub(crate) fn poll(&mut self, now: Millis) -> Vec<(Millis, T)> {
        let mut due: Vec<Entry<T>> = std::mem::take(&mut self.ready);
        // Overflow entries due already (a big jump), or now within the wheel's range.
        let mut later = Vec::new();
        for e in std::mem::take(&mut self.overflow) {
            if e.deadline <= now {
                due.push(e);
            } else if e.deadline - now <= PARK {
                later.push(e);
            } else {
                self.overflow.push(e);
            }
        }
        // Entries of expired slots that are not due yet are placed again once the wheel's
        // time is `now` (each then lands in a slot that starts after `now`).
        while let Some((level, slot, start)) = self.next_expiration() {
            if start > now {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            self.occupied[level] &= !(1 << slot);
            for e in std::mem::take(&mut self.slots[level * SLOTS + slot]) {
                if e.deadline <= now {
                    due.push(e);
                } else {
                    later.push(e);
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
        for e in later {
            self.place(e);
        }
        self.len -= due.len();
        due.sort_by_key(|e| (e.deadline, e.seq));
        due.into_iter().map(|e| (e.deadline, e.item)).collect()
    }

    /// The earliest pending deadline, exactly: entries sit in the slot of their own
    /// deadline, so the first expiring slot holds the earliest of the wheel.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        let min = |v: &[Entry<T>]| v.iter().map(|e| e.deadline).min();
        if let Some(d) = min(&self.ready) {
            return Some(d);
        }
        let wheel = self
            .next_expiration()
            .and_then(|(level, slot, _)| min(&self.slots[level * SLOTS + slot]));
        match (wheel, min(&self.overflow)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A time source: monotonic milliseconds and the wall clock.
pub(crate) trait Clock: Send + Sync {
    /// Monotonic milliseconds.
    fn now(&self) -> Millis;
    /// Wall-clock time.
    fn wall(&self) -> SystemTime;
}

/// The system's clocks.
#[derive(Debug)]
pub(crate) struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub(crate) fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The last multiple of `interval` since the Unix epoch at or before `wall` (Go's
/// `time.Truncate`, so 30 s windows start at :00 and :30, 24 h windows at UTC midnight).
pub(crate) fn prev_aligned(wall: SystemTime, interval: Duration) -> SystemTime {
    let iv = interval.as_millis().max(1);
    let ms = wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    UNIX_EPOCH + Duration::from_millis((ms - ms % iv) as u64)
}

/// The next multiple of `interval` strictly after `wall`.
pub(crate) fn next_aligned(wall: SystemTime, interval: Duration) -> SystemTime {
    prev_aligned(wall, interval) + Duration::from_millis(interval.as_millis().max(1) as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock moved by hand.
    #[derive(Debug, Default)]
    pub(crate) struct FakeClock {
        ms: AtomicU64,
    }

    impl FakeClock {
        pub(crate) fn advance(&self, ms: u64) {
            self.ms.fetch_add(ms, Ordering::SeqCst);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Millis {
            self.ms.load(Ordering::SeqCst)
        }
        fn wall(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + self.now())
        }
    }

    #[test]
    fn fires_in_order_and_never_early() {
        let clock = FakeClock::default();
        let mut w = TimerWheel::new(clock.now());
        for (d, name) in [(30, "c"), (10, "a"), (10, "b"), (5000, "d"), (70_000, "e")] {
            w.insert(d, name);
        }
        assert_eq!(w.next_deadline(), Some(10));
        clock.advance(9);
        assert!(w.poll(clock.now()).is_empty());
        clock.advance(1);
        assert_eq!(w.poll(clock.now()), vec![(10, "a"), (10, "b")]);
        assert_eq!(w.next_deadline(), Some(30));
        clock.advance(10_000);
        assert_eq!(w.poll(clock.now()), vec![(30, "c"), (5000, "d")]);
        assert_eq!(w.next_deadline(), Some(70_000));
        clock.advance(59_989);
        assert!(w.poll(clock.now()).is_empty());
        clock.advance(1);
        assert_eq!(w.poll(clock.now()), vec![(70_000, "e")]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn past_and_far_deadlines() {
        let mut w = TimerWheel::new(1000);
        w.insert(5, "past");
        let day = 86_400_000u64;
        w.insert(1000 + 400 * day, "400 days");
        w.insert(1000 + (1 << 40), "beyond the horizon");
        w.insert(2000, "soon");
        assert_eq!(w.next_deadline(), Some(5));
        assert_eq!(w.poll(1000), vec![(5, "past")]);
        assert_eq!(w.next_deadline(), Some(2000));
        assert_eq!(w.poll(2500), vec![(2000, "soon")]);
        assert_eq!(w.next_deadline(), Some(1000 + 400 * day));
        assert!(w.poll(1000 + 400 * day - 1).is_empty());
        assert_eq!(
            w.poll(1000 + 400 * day),
            vec![(1000 + 400 * day, "400 days")]
        );
        assert!(w.poll(1000 + (1 << 40) - 1).is_empty());
        assert_eq!(
            w.poll(1000 + (1 << 40)),
            vec![(1000 + (1 << 40), "beyond the horizon")]
        );
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn matches_a_sorted_model_under_random_operations() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        let mut now = 0u64;
        let mut w = TimerWheel::new(now);
        let mut model: Vec<(u64, u64)> = Vec::new(); // (deadline, seq)
        let mut seq = 0u64;
        for _ in 0..100_000 {
            match rnd(10) {
                0..=5 => {
                    let span = [10, 1000, 100_000, 10_000_000, 1 << 37][rnd(5) as usize];
                    let d = (now + rnd(span)).saturating_sub(rnd(3) * rnd(50));
                    seq += 1;
                    w.insert(d, seq);
                    model.push((d, seq));
                }
                _ => {
                    let step = [1, 7, 64, 4096, 300_000, 1 << 30][rnd(6) as usize];
                    now += rnd(step);
                    let got: Vec<u64> = w.poll(now).into_iter().map(|(_, s)| s).collect();
                    model.sort();
                    let split = model.partition_point(|e| e.0 <= now);
                    let want: Vec<u64> = model.drain(..split).map(|e| e.1).collect();
                    assert_eq!(got, want, "at {now}");
                    assert_eq!(w.next_deadline(), model.first().map(|e| e.0));
                }
            }
            assert_eq!(w.len(), model.len());
        }
    }

    #[test]
    fn alignment() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_012_345);
        let s30 = Duration::from_secs(30);
        assert_eq!(
            prev_aligned(t, s30),
            UNIX_EPOCH + Duration::from_secs(1_700_000_010)
        );
        assert_eq!(
            next_aligned(t, s30),
            UNIX_EPOCH + Duration::from_secs(1_700_000_040)
        );
        let exact = UNIX_EPOCH + Duration::from_secs(1_700_000_010);
        assert_eq!(
            next_aligned(exact, s30),
            UNIX_EPOCH + Duration::from_secs(1_700_000_040)
        );
        let day = Duration::from_secs(86_400);
        assert_eq!(
            prev_aligned(t, day),
            UNIX_EPOCH + Duration::from_secs(1_699_920_000)
        );
    }
}
