//! Scheduling for the compaction thread (interim heap-based version; API of the wheel).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds on a monotonic clock.
pub(crate) type Millis = u64;

/// Pending timers.
pub(crate) struct TimerWheel<T> {
    heap: BinaryHeap<Reverse<(Millis, u64)>>,
    items: std::collections::HashMap<u64, T>,
    seq: u64,
}

impl<T> TimerWheel<T> {
    pub(crate) fn new(_now: Millis) -> Self {
        TimerWheel {
            heap: BinaryHeap::new(),
            items: Default::default(),
            seq: 0,
        }
    }

    pub(crate) fn insert(&mut self, deadline: Millis, item: T) {
        self.seq += 1;
        self.heap.push(Reverse((deadline, self.seq)));
        self.items.insert(self.seq, item);
    }

    pub(crate) fn poll(&mut self, now: Millis) -> Vec<(Millis, T)> {
        let mut out = Vec::new();
        while let Some(Reverse((d, id))) = self.heap.peek().copied() {
            if d > now {
                break;
            }
            self.heap.pop();
            if let Some(t) = self.items.remove(&id) {
                out.push((d, t));
            }
        }
        out
    }

    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }
}

/// A time source.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Millis;
    fn wall(&self) -> SystemTime;
}

/// The system clock.
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

/// The last multiple of `interval` since the epoch at or before `wall`.
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
