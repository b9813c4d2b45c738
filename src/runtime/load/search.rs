//! Search for the highest Server-scenario rate that still passes: grow
//! geometrically from a caller's estimate while passing (or shrink while
//! failing), then bisect between the best pass and the lowest fail.

use super::{server, validate, Clock, LoadgenError, ScenarioResult, ServerSettings, Sut};
use serde::{Deserialize, Serialize};

/// Search knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// First rate tried, e.g. from a SingleStream or Offline throughput estimate.
    pub initial_qps: f64,
    /// Factor to grow (or shrink) by while bracketing; must be > 1.
    pub growth: f64,
    /// Stop once (lowest fail − best pass) / best pass is at most this.
    pub rel_tolerance: f64,
    /// Total Server runs allowed, bracketing and bisection together.
    pub max_runs: usize,
    /// Bracketing gives up below / above these rates.
    pub min_qps: f64,
    pub max_qps: f64,
}

impl SearchSettings {
    /// Defaults: ×2 steps, 5% tolerance, 20 runs, rates within ×1000 of the estimate.
    pub fn new(initial_qps: f64) -> Self {
        let (min_qps, max_qps) = (initial_qps / 1000.0, initial_qps * 1000.0);
        Self {
            initial_qps,
            growth: 2.0,
            rel_tolerance: 0.05,
            max_runs: 20,
            min_qps,
            max_qps,
        }
    }

    fn validate(&self) -> Result<(), LoadgenError> {
        validate::positive("initial_qps", self.initial_qps)?;
        validate::positive("min_qps", self.min_qps)?;
        validate::positive("max_qps", self.max_qps)?;
        validate::positive("rel_tolerance", self.rel_tolerance)?;
        validate::at_least_one("max_runs", self.max_runs)?;
        if !(self.growth.is_finite() && self.growth > 1.0) {
            let reason = format!("must be finite and > 1, got {}", self.growth);
            return Err(LoadgenError::InvalidSetting {
                name: "growth",
                reason,
            });
        }
        Ok(())
    }
}

/// One rate the search tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub qps: f64,
    pub passed: bool,
    pub percentile_ms: Option<f64>,
    pub verdict: String,
}

/// Search outcome: the best passing run (if any) and every rate tried, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxQpsResult {
    pub best: Option<ScenarioResult>,
    pub tried: Vec<Trial>,
    /// A pass and a fail were found within `rel_tolerance` of each other.
    pub converged: bool,
}

/// Runs the search; `base` supplies every Server knob except `qps`.
pub fn find_max_qps(
    sut: &dyn Sut,
    base: &ServerSettings,
    search: &SearchSettings,
    clock: &dyn Clock,
) -> Result<MaxQpsResult, LoadgenError> {
    search.validate()?;
    let mut s = Search {
        sut,
        base,
        clock,
        tried: Vec::new(),
        best: None,
        lowest_fail: None,
    };
    s.bracket(search);
    s.bisect(search);
    let converged = s.gap().is_some_and(|g| g <= search.rel_tolerance);
    Ok(MaxQpsResult {
        best: s.best.map(|(_, r)| r),
        tried: s.tried,
        converged,
    })
}

struct Search<'a> {
    sut: &'a dyn Sut,
    base: &'a ServerSettings,
    clock: &'a dyn Clock,
    tried: Vec<Trial>,
    best: Option<(f64, ScenarioResult)>,
    lowest_fail: Option<f64>,
}

impl Search<'_> {
    /// Moves geometrically until one pass and one fail are known (or limits hit).
    fn bracket(&mut self, k: &SearchSettings) {
        let mut qps = k.initial_qps.clamp(k.min_qps, k.max_qps.max(k.min_qps));
        while self.tried.len() < k.max_runs {
            let passed = self.probe(qps);
            let done = if passed {
                self.lowest_fail.is_some() || qps >= k.max_qps
            } else {
                self.best.is_some() || qps <= k.min_qps
            };
            if done {
                return;
            }
            qps = if passed {
                (qps * k.growth).min(k.max_qps)
            } else {
                (qps / k.growth).max(k.min_qps)
            };
        }
    }

    /// Geometric bisection between best pass and lowest fail.
    fn bisect(&mut self, k: &SearchSettings) {
        while self.tried.len() < k.max_runs && self.gap().is_some_and(|g| g > k.rel_tolerance) {
            let (Some((lo, _)), Some(hi)) = (&self.best, self.lowest_fail) else {
                return;
            };
            self.probe((lo * hi).sqrt());
        }
    }

    /// Relative distance between best pass and lowest fail, once both exist.
    fn gap(&self) -> Option<f64> {
        let lo = self.best.as_ref()?.0;
        Some(self.lowest_fail? / lo - 1.0)
    }

    /// Runs the Server scenario at `qps` and records it. A run that cannot
    /// even start (e.g. schedule too long) counts as a fail: nothing above it
    /// can be claimed.
    fn probe(&mut self, qps: f64) -> bool {
        let settings = ServerSettings {
            qps,
            ..self.base.clone()
        };
        let (passed, trial) = match server(self.sut, &settings, self.clock) {
            Ok(r) => self.keep(qps, r),
            Err(e) => (
                false,
                Trial {
                    qps,
                    passed: false,
                    percentile_ms: None,
                    verdict: format!("error: {e}"),
                },
            ),
        };
        if !passed && self.lowest_fail.is_none_or(|f| qps < f) {
            self.lowest_fail = Some(qps);
        }
        self.tried.push(trial);
        passed
    }

    /// Records a completed run, keeping it if it is the best pass so far.
    fn keep(&mut self, qps: f64, r: ScenarioResult) -> (bool, Trial) {
        let passed = r.passed == Some(true);
        let trial = Trial {
            qps,
            passed,
            percentile_ms: r.percentile_ms,
            verdict: r.verdict.clone(),
        };
        if passed && self.best.as_ref().is_none_or(|(b, _)| qps > *b) {
            self.best = Some((qps, r));
        }
        (passed, trial)
    }
}
