//! A persistent team of threads for parallel regions with barriers: the caller and
//! `threads - 1` helper threads run one closure together, and inside it meet at
//! [`Ctx::barrier`] between steps.
//!
//! Why not rayon here: a decoder step for one token is ~200 small products (a few
//! microseconds each on two cores); a rayon fork-join per product wakes the pool's threads
//! and puts the caller to sleep every time (futex calls that took ~10% of a decode step).
//! In a region the threads are woken once per step and then meet at spin barriers.
//!
//! Helpers spin for a while after a region (the next one usually follows within
//! microseconds), then park. Only one region runs at a time: a caller that finds the team
//! busy (another thread's region) runs its closure alone, with one thread and barriers that
//! return at once, so concurrent callers never deadlock. A panic in any thread of a region
//! is re-raised in the caller.

use std::cell::UnsafeCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long helpers spin for the next region before parking.
const SPIN_FOR: Duration = Duration::from_micros(300);
/// Spins between looks at the clock or at a poisoned flag; past [`SPIN_FOR`] in a barrier
/// the waiters yield their core (the machine may be oversubscribed).
const SPINS: u32 = 256;

type Job = dyn Fn(&Ctx) + Sync;

/// What one thread of a region sees.
pub struct Ctx<'a> {
    index: usize,
    count: usize,
    shared: Option<&'a Shared>,
}

impl Ctx<'_> {
    /// This thread's index, `0..count` (0 is the caller).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Threads in the region.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Waits until every thread of the region has reached this barrier (the same number
    /// of times). Writes before it are visible to every thread after it.
    pub fn barrier(&self) {
        if let Some(shared) = self.shared {
            shared.barrier(self.count);
        }
    }

    /// This thread's part of `0..n` split into `count` contiguous ranges whose bounds are
    /// multiples of `align` (except `n`).
    pub fn split(&self, n: usize, align: usize) -> Range<usize> {
        split(n, align, self.index, self.count)
    }
}

/// Part `i` of `count` of `0..n`, bounds multiples of `align` (except `n`).
pub fn split(n: usize, align: usize, i: usize, count: usize) -> Range<usize> {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let at = |j: usize| (units * j / count * align).min(n);
    at(i)..at(i + 1)
}

/// Runs `f` on `threads` threads at once (the caller is index 0) and returns when all are
/// done. `threads` above the team's size (set by the first call) is capped to it.
pub fn run(threads: usize, f: &(dyn Fn(&Ctx) + Sync)) {
    let alone = || {
        f(&Ctx {
            index: 0,
            count: 1,
            shared: None,
        })
    };
    if threads <= 1 {
        return alone();
    }
    static TEAM: OnceLock<Mutex<Team>> = OnceLock::new();
    let team = TEAM.get_or_init(|| Mutex::new(Team::new(threads - 1)));
    let Ok(team) = team.try_lock() else {
        return alone();
    };
    team.run(threads.min(team.helpers.len() + 1), f);
}

struct Team {
    shared: Arc<Shared>,
    helpers: Vec<Thread>,
}

struct Shared {
    /// The current job; written by the caller before `epoch` moves, read by helpers after.
    job: UnsafeCell<Option<(*const Job, usize)>>,
    epoch: AtomicUsize,
    done: AtomicUsize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
    sleeping: Vec<AtomicBool>,
}

// SAFETY: `job` is written only by the caller holding the team's lock while every helper is
// idle (before `epoch` is released), and read by helpers only after they acquire that epoch;
// the closure behind it is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    fn barrier(&self, count: usize) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == count {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let start = Instant::now();
        loop {
            for _ in 0..SPINS {
                if self.generation.load(Ordering::Acquire) != generation {
                    return;
                }
                std::hint::spin_loop();
            }
            if self.poisoned.load(Ordering::Relaxed) {
                panic!("another thread of the parallel region panicked");
            }
            if start.elapsed() > SPIN_FOR {
                thread::yield_now();
            }
        }
    }
}

impl Team {
    fn new(helpers: usize) -> Self {
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            sleeping: (0..helpers).map(|_| AtomicBool::new(false)).collect(),
        });
        let helpers = (0..helpers)
            .map(|i| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("taskbench-team-{}", i + 1))
                    .spawn(move || helper(&shared, i))
                    .expect("spawning a team thread")
                    .thread()
                    .clone()
            })
            .collect();
        Team { shared, helpers }
    }

    fn run(&self, count: usize, f: &(dyn Fn(&Ctx) + Sync)) {
        let s = &*self.shared;
        // SAFETY: helpers are idle (the previous region ended with all of them done) and
        // read `job` only after the epoch below; the pointer is erased to 'static but the
        // closure outlives its use: this function waits for every helper before returning.
        unsafe {
            let ptr: *const Job = std::mem::transmute::<*const (dyn Fn(&Ctx) + Sync + '_), _>(f);
            *s.job.get() = Some((ptr, count));
        }
        s.done.store(0, Ordering::Relaxed);
        s.poisoned.store(false, Ordering::Relaxed);
        // A region that panicked may have left a barrier half counted.
        s.arrived.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        for (i, t) in self.helpers.iter().enumerate() {
            if s.sleeping[i].load(Ordering::SeqCst) {
                t.unpark();
            }
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&Ctx {
                index: 0,
                count,
                shared: Some(s),
            })
        }));
        if result.is_err() {
            s.poisoned.store(true, Ordering::Relaxed);
        }
        // Wait for every helper (those past `count` report at once).
        let start = Instant::now();
        while s.done.load(Ordering::Acquire) < self.helpers.len() {
            for _ in 0..SPINS {
                std::hint::spin_loop();
            }
            if start.elapsed() > SPIN_FOR {
                thread::yield_now();
            }
        }
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        if s.poisoned.load(Ordering::Relaxed) {
            panic!("a thread of the parallel region panicked");
        }
    }
}

fn helper(s: &Shared, i: usize) {
    let mut seen = 0;
    loop {
        // Spin, then park, until the epoch moves.
        let start = Instant::now();
        let mut epoch = s.epoch.load(Ordering::Acquire);
        while epoch == seen {
            for _ in 0..SPINS {
                std::hint::spin_loop();
            }
            epoch = s.epoch.load(Ordering::Acquire);
            if epoch == seen && start.elapsed() > SPIN_FOR {
                s.sleeping[i].store(true, Ordering::SeqCst);
                epoch = s.epoch.load(Ordering::SeqCst);
                if epoch == seen {
                    thread::park();
                    epoch = s.epoch.load(Ordering::Acquire);
                }
                s.sleeping[i].store(false, Ordering::Relaxed);
            }
        }
        seen = epoch;
        // SAFETY: written before the epoch this thread just acquired (see `Team::run`).
        let (job, count) = unsafe { (*s.job.get()).expect("a job comes with every epoch") };
        let index = i + 1;
        if index < count {
            // SAFETY: the caller keeps the closure alive until this thread reports done.
            let f = unsafe { &*job };
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                f(&Ctx {
                    index,
                    count,
                    shared: Some(s),
                })
            }));
            if ok.is_err() {
                s.poisoned.store(true, Ordering::Relaxed);
            }
        }
        s.done.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn split_covers_the_range_in_aligned_parts() {
        for n in [0usize, 1, 5, 16, 17, 576, 49152, 1000] {
            for count in 1..5 {
                for align in [1usize, 4, 16] {
                    let parts: Vec<_> = (0..count).map(|i| split(n, align, i, count)).collect();
                    assert_eq!(parts[0].start, 0);
                    assert_eq!(parts[count - 1].end, n);
                    for w in parts.windows(2) {
                        assert_eq!(w[0].end, w[1].start);
                        assert!(w[0].end % align == 0 || w[0].end == n);
                    }
                }
            }
        }
    }

    #[test]
    fn regions_see_each_others_writes_after_barriers() {
        for round in 0..200u64 {
            let cells: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
            let sums: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
            run(2, &|ctx| {
                for step in 0..5u64 {
                    cells[ctx.index()].store(round * 100 + step, Ordering::Relaxed);
                    ctx.barrier();
                    let total: u64 = (0..ctx.count())
                        .map(|i| cells[i].load(Ordering::Relaxed))
                        .sum();
                    assert_eq!(total, ctx.count() as u64 * (round * 100 + step));
                    ctx.barrier();
                }
                sums[ctx.index()].store(1, Ordering::Relaxed);
            });
            let ran: u64 = sums.iter().map(|s| s.load(Ordering::Relaxed)).sum();
            assert!(ran >= 1);
        }
    }

    #[test]
    fn concurrent_callers_do_not_deadlock() {
        let total = AtomicU64::new(0);
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        run(2, &|ctx| {
                            ctx.barrier();
                            total.fetch_add(1, Ordering::Relaxed);
                            ctx.barrier();
                        });
                    }
                });
            }
        });
        assert!(total.load(Ordering::Relaxed) >= 400);
    }

    #[test]
    fn a_panic_in_a_region_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            run(2, &|ctx| {
                if ctx.index() == ctx.count() - 1 {
                    panic!("boom");
                }
                ctx.barrier();
            })
        });
        assert!(r.is_err());
        // The team still works afterwards.
        let n = AtomicU64::new(0);
        run(2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert!(n.load(Ordering::Relaxed) >= 1);
    }
}
