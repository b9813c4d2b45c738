//! A persistent team of threads for parallel regions with barriers: the caller and
//! `threads - 1` helper threads run one closure together, and inside it meet at
//! [`Ctx::barrier`] between steps.
//!
//! Why not rayon here: a decoder step for one token is ~200 small products (a few
//! microseconds each on two cores); a rayon fork-join per product wakes the pool's threads
//! and puts the caller to sleep every time (futex calls that took ~10% of a decode step).
//! In a region the threads are woken once per step and then meet at spin barriers.
//!
//! Two kinds of region. [`run`]: a fixed team, each thread taking its part by index
//! ([`Ctx::split`]) and waiting for the others at [`Ctx::barrier`]. [`run_steps`]: the work
//! is a sequence of steps, each cut into chunks that whichever thread is free takes
//! ([`Ctx::step`]); nobody waits for a thread that has not turned up, so a helper that the
//! operating system has not woken yet (a busy machine) costs nothing, as with rayon's
//! work stealing, and the caller alone finishes the region if it must.
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

/// Bits of [`Shared::region`]: the region's epoch above, whether it is closed to late
/// helpers, and the number of helpers inside it below.
const EPOCH_SHIFT: u32 = 33;
const CLOSED: u64 = 1 << 32;
const ACTIVE: u64 = CLOSED - 1;

/// What one thread of a region sees.
pub struct Ctx<'a> {
    index: usize,
    count: usize,
    shared: Option<&'a Shared>,
    /// A [`run_steps`] region: the number of threads that take part is not known.
    open: bool,
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
        assert!(!self.open, "barriers need the fixed team of `run`");
        if let Some(shared) = self.shared {
            shared.barrier(self.count);
        }
    }

    /// This thread's part of `0..n` split into `count` contiguous ranges whose bounds are
    /// multiples of `align` (except `n`).
    pub fn split(&self, n: usize, align: usize) -> Range<usize> {
        split(n, align, self.index, self.count)
    }

    /// Takes chunks `0..chunks` of step `step` of `steps` and runs `f` on each, until none is
    /// left, then waits until every chunk of the step has finished (wherever it ran). Every
    /// thread of a [`run_steps`] region calls this for steps 0, 1, 2, ... in order, with the
    /// same `chunks` for a step; writes made by any chunk of a step are visible to every
    /// thread once its `step` call returns.
    pub fn step(&self, steps: &Steps, step: usize, chunks: usize, mut f: impl FnMut(usize)) {
        let (taken, finished) = &steps.counters[step];
        loop {
            let chunk = taken.fetch_add(1, Ordering::Relaxed);
            if chunk >= chunks {
                break;
            }
            f(chunk);
            finished.fetch_add(1, Ordering::Release);
        }
        let start = Instant::now();
        while finished.load(Ordering::Acquire) < chunks {
            for _ in 0..SPINS {
                std::hint::spin_loop();
            }
            if let Some(shared) = self.shared {
                shared.check_poisoned();
            }
            if start.elapsed() > STEP_SPIN {
                // A chunk's thread lost its core (a busy machine): let it have this one.
                thread::yield_now();
            }
        }
    }
}

/// How long a thread spins waiting for another's chunk before yielding its core.
const STEP_SPIN: Duration = Duration::from_micros(50);

/// The progress of a [`run_steps`] region: per step, chunks taken and chunks finished.
pub struct Steps {
    counters: Vec<(AtomicUsize, AtomicUsize)>,
}

impl Steps {
    /// Progress for a region of `steps` steps.
    pub fn new(steps: usize) -> Self {
        Steps {
            counters: (0..steps)
                .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
                .collect(),
        }
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
    run_region(threads, false, f)
}

/// Runs `f` on the caller and on every helper that turns up before the caller has finished
/// (at most `threads` in all), each calling [`Ctx::step`] for the region's steps (see the
/// module docs). [`Ctx::barrier`] and [`Ctx::split`] are not for these regions.
pub fn run_steps(threads: usize, f: &(dyn Fn(&Ctx) + Sync)) {
    run_region(threads, true, f)
}

fn run_region(threads: usize, open: bool, f: &(dyn Fn(&Ctx) + Sync)) {
    let alone = || {
        f(&Ctx {
            index: 0,
            count: 1,
            shared: None,
            open,
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
    team.run(threads.min(team.helpers.len() + 1), open, f);
}

/// A buffer every thread of a region reads, each writing only its own parts between
/// barriers; the code using it says, at each access, why no other thread touches that part
/// meanwhile.
#[derive(Clone, Copy)]
pub struct SharedMut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the accessors are unsafe; their callers guarantee disjoint writes between barriers
// and reads only after a barrier that follows every write they read.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Shares `v` for the region (which must end before `v` is used again).
    pub fn new(v: &mut [f32]) -> Self {
        SharedMut {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// Elements `range`, to write.
    ///
    /// # Safety
    /// No other thread reads or writes `range` until the next barrier.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, range: Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len())
    }

    /// The whole buffer, to read.
    ///
    /// # Safety
    /// No thread writes any of it until the next barrier.
    pub unsafe fn all(&self) -> &[f32] {
        std::slice::from_raw_parts(self.ptr, self.len)
    }

    /// The start of the buffer, for kernels that write through a pointer.
    pub fn ptr(&self) -> *mut f32 {
        self.ptr
    }
}

struct Team {
    shared: Arc<Shared>,
    helpers: Vec<Thread>,
}

struct Shared {
    /// The current job; written by the caller before `epoch` moves, read by helpers after.
    job: UnsafeCell<Option<(*const Job, usize, bool)>>,
    epoch: AtomicUsize,
    /// The current region's epoch, closed flag and helpers inside (see [`EPOCH_SHIFT`]): a
    /// helper enters only a region that is still open, so the caller of a `run_steps`
    /// region can close it and wait only for the helpers already inside.
    region: std::sync::atomic::AtomicU64,
    /// Helpers that have run the closure of the current region.
    finished: AtomicUsize,
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
    fn check_poisoned(&self) {
        if self.poisoned.load(Ordering::Relaxed) {
            panic!("another thread of the parallel region panicked");
        }
    }

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
            region: std::sync::atomic::AtomicU64::new(0),
            finished: AtomicUsize::new(0),
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

    fn run(&self, count: usize, open: bool, f: &(dyn Fn(&Ctx) + Sync)) {
        let s = &*self.shared;
        // SAFETY: no helper is inside a region (the previous one ended with none inside and
        // closed to latecomers) and helpers read `job` only after entering the region opened
        // below; the pointer is erased to 'static but the closure outlives its use: this
        // function waits for every helper inside before returning.
        unsafe {
            let ptr: *const Job = std::mem::transmute::<*const (dyn Fn(&Ctx) + Sync + '_), _>(f);
            *s.job.get() = Some((ptr, count, open));
        }
        s.finished.store(0, Ordering::Relaxed);
        s.poisoned.store(false, Ordering::Relaxed);
        // A region that panicked may have left a barrier half counted.
        s.arrived.store(0, Ordering::Relaxed);
        let epoch = s.epoch.load(Ordering::Relaxed).wrapping_add(1);
        s.region.store(region_word(epoch), Ordering::SeqCst);
        s.epoch.store(epoch, Ordering::SeqCst);
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
                open,
            })
        }));
        if result.is_err() {
            s.poisoned.store(true, Ordering::Relaxed);
        }
        if !open {
            // A fixed team: every helper below `count` must have run its part.
            wait_until(|| s.finished.load(Ordering::Acquire) >= count - 1);
        }
        s.region.fetch_or(CLOSED, Ordering::AcqRel);
        wait_until(|| s.region.load(Ordering::Acquire) & ACTIVE == 0);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        if s.poisoned.load(Ordering::Relaxed) {
            panic!("a thread of the parallel region panicked");
        }
    }
}

fn region_word(epoch: usize) -> u64 {
    ((epoch as u64) & (u64::MAX >> EPOCH_SHIFT)) << EPOCH_SHIFT
}

/// Spins until `done`, yielding the core after [`SPIN_FOR`] (the machine may be busy).
fn wait_until(done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        for _ in 0..SPINS {
            std::hint::spin_loop();
        }
        if start.elapsed() > SPIN_FOR {
            thread::yield_now();
        }
    }
}

/// Enters the region of `epoch` if it is still the current one and open.
fn enter(s: &Shared, epoch: usize) -> bool {
    let mut word = s.region.load(Ordering::Acquire);
    loop {
        if word & !(CLOSED | ACTIVE) != region_word(epoch) || word & CLOSED != 0 {
            return false;
        }
        match s
            .region
            .compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return true,
            Err(now) => word = now,
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
        if !enter(s, epoch) {
            continue;
        }
        // SAFETY: written before the region this thread just entered was opened.
        let (job, count, open) = unsafe { (*s.job.get()).expect("a job comes with every region") };
        let index = i + 1;
        if index < count {
            // SAFETY: the caller keeps the closure alive until every helper inside has left.
            let f = unsafe { &*job };
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                f(&Ctx {
                    index,
                    count,
                    shared: Some(s),
                    open,
                })
            }));
            if ok.is_err() {
                s.poisoned.store(true, Ordering::Relaxed);
            }
            s.finished.fetch_add(1, Ordering::Release);
        }
        s.region.fetch_sub(1, Ordering::Release);
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

    /// Each step reads what every chunk of the previous step wrote, whichever thread ran
    /// it: the result equals the sequential computation.
    #[test]
    fn steps_see_every_chunk_of_the_previous_step() {
        const STEPS: usize = 40;
        const CHUNKS: usize = 7;
        let want = {
            let mut v = [1u64; CHUNKS];
            for _ in 0..STEPS {
                let total: u64 = v.iter().sum();
                v = std::array::from_fn(|c| (total + c as u64) % 1_000_003);
            }
            v
        };
        for threads in [1, 2, 3] {
            for _ in 0..50 {
                let cells: Vec<[AtomicU64; CHUNKS]> = (0..2)
                    .map(|_| std::array::from_fn(|_| AtomicU64::new(1)))
                    .collect();
                let steps = Steps::new(STEPS);
                run_steps(threads, &|ctx| {
                    for step in 0..STEPS {
                        let (from, to) = (&cells[step % 2], &cells[(step + 1) % 2]);
                        ctx.step(&steps, step, CHUNKS, |c| {
                            let total: u64 = from.iter().map(|x| x.load(Ordering::Relaxed)).sum();
                            to[c].store((total + c as u64) % 1_000_003, Ordering::Relaxed);
                        });
                    }
                });
                let got: Vec<u64> = cells[STEPS % 2]
                    .iter()
                    .map(|x| x.load(Ordering::Relaxed))
                    .collect();
                assert_eq!(got, want, "{threads} threads");
            }
        }
    }

    #[test]
    fn a_panic_in_a_chunk_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            let steps = Steps::new(2);
            run_steps(2, &|ctx| {
                ctx.step(&steps, 0, 4, |c| assert_ne!(c, 3, "boom"));
                ctx.step(&steps, 1, 4, |_| {});
            })
        });
        assert!(r.is_err());
        let n = AtomicU64::new(0);
        let steps = Steps::new(1);
        run_steps(2, &|ctx| {
            ctx.step(&steps, 0, 5, |_| {
                n.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(n.load(Ordering::Relaxed), 5);
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
