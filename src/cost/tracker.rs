//! `CostTracker`: the `--max-cost USD` guard for API runs with requests in flight.
//!
//! Checking the spend after each response is not enough when requests run concurrently: ten
//! requests sent at $0.99 of a $1.00 budget all pass the check and land at $1.09. So a request
//! first *reserves* its worst case (every prompt token uncached, the answer running to
//! `max_tokens`: [`ModelPrice::worst_case`]), and is sent only if
//! `spent + reserved + worst case <= budget`. When it returns it is *settled*: the reservation
//! is released and the billed cost is added to `spent`.
//!
//! Invariant: `spent + reserved <= budget` at every moment, provided each settled cost is at
//! most its reservation (true whenever the prompt-token count reserved was the real one: the
//! output cannot exceed `max_tokens`). Reserve adds only what fits; settle replaces an amount by
//! one no larger. A provider that bills more than was reserved (a prompt undercounted by a
//! chars/4 estimate) breaks the premise, not the bookkeeping: the excess is recorded in
//! [`Ledger::overrun`] for the report, and no later reservation is granted past the budget.
//!
//! After the first refusal every later request is refused, even one small enough to fit:
//! letting short prompts through once long ones no longer fit would bias the evaluated items
//! toward short prompts, and the run should stop cleanly instead.

use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::cost::error::CostError;
use crate::cost::pricing::ModelPrice;
use crate::cost::usd::Usd;

/// The state of a budget at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub budget: Usd,
    /// Billed cost of settled requests.
    pub spent: Usd,
    /// Worst cases held by requests in flight.
    pub reserved: Usd,
    pub in_flight: u64,
    pub settled: u64,
    pub refused: u64,
    /// Sum of billed costs above their reservations (0 when every prompt count was exact).
    pub overrun: Usd,
}

impl Ledger {
    /// Budget not spent and not held: what the next reservation may take.
    pub fn available(&self) -> Usd {
        self.budget.saturating_sub(self.spent + self.reserved)
    }
}

/// A granted reservation; hand it back to [`CostTracker::settle`]. Not `Clone`, so it cannot be
/// settled twice. One that is dropped unsettled stays held: its request may have been billed.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "settle the reservation when the request returns, or its worst case stays held"]
pub struct Reservation {
    amount: Usd,
}

impl Reservation {
    /// The worst case held.
    pub fn amount(&self) -> Usd {
        self.amount
    }
}

/// What a settled request cost against what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Settlement {
    pub reserved: Usd,
    pub actual: Usd,
}

impl Settlement {
    /// The provider billed more than the worst case reserved (the prompt count was low).
    pub fn overran(&self) -> bool {
        self.actual > self.reserved
    }
}

/// A `--max-cost` budget shared by concurrent requests (`Sync`; share it by reference or `Arc`).
#[derive(Debug)]
pub struct CostTracker {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    ledger: Ledger,
    /// Set by the first refusal; see the module docs.
    closed: bool,
}

impl CostTracker {
    pub fn new(budget: Usd) -> Self {
        Self {
            state: Mutex::new(State {
                ledger: Ledger {
                    budget,
                    ..Ledger::default()
                },
                closed: false,
            }),
        }
    }

    /// Holds `worst_case` if it fits in what is left, else refuses (and refuses every later
    /// request). A zero worst case always fits while the tracker is open.
    pub fn reserve(&self, worst_case: Usd) -> Result<Reservation, CostError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let ledger = &mut state.ledger;
        if state.closed {
            ledger.refused += 1;
            return Err(CostError::BudgetClosed {
                budget: ledger.budget,
            });
        }
        if worst_case > ledger.available() || ledger.spent + ledger.reserved > ledger.budget {
            ledger.refused += 1;
            let err = CostError::BudgetExhausted {
                budget: ledger.budget,
                spent: ledger.spent,
                reserved: ledger.reserved,
                requested: worst_case,
            };
            state.closed = true;
            return Err(err);
        }
        ledger.reserved += worst_case;
        ledger.in_flight += 1;
        Ok(Reservation { amount: worst_case })
    }

    /// Reserves a request's worst case: `prompt_tokens` all uncached plus `max_output_tokens`.
    pub fn reserve_request(
        &self,
        price: &ModelPrice,
        prompt_tokens: u64,
        max_output_tokens: u64,
    ) -> Result<Reservation, CostError> {
        self.reserve(price.worst_case(prompt_tokens, max_output_tokens))
    }

    /// Releases `reservation` and records the billed cost. A request that failed before the
    /// provider billed it settles with `Usd::ZERO`; one whose billing is unknown should settle
    /// with its reservation's amount.
    pub fn settle(&self, reservation: Reservation, actual: Usd) -> Settlement {
        let mut guard = self.lock();
        let ledger = &mut guard.ledger;
        ledger.reserved = ledger.reserved.saturating_sub(reservation.amount);
        ledger.in_flight = ledger.in_flight.saturating_sub(1);
        ledger.settled += 1;
        ledger.spent += actual;
        ledger.overrun += actual.saturating_sub(reservation.amount);
        Settlement {
            reserved: reservation.amount,
            actual,
        }
    }

    /// A snapshot of the budget.
    pub fn ledger(&self) -> Ledger {
        self.lock().ledger
    }

    /// Whether a request has been refused (and so every later one will be).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, and the ledger is updated field by field with
        // no invariant spanning a panic point, so a poisoned lock's state is still valid.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::pricing::{PriceOrigin, Pricing, TokenUsage};
    use proptest::prelude::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    fn assert_within_budget(tracker: &CostTracker) {
        let l = tracker.ledger();
        assert!(l.spent + l.reserved <= l.budget, "{l:?}");
    }

    #[test]
    fn reserves_until_the_next_could_overshoot() {
        let tracker = CostTracker::new(usd("1.00"));
        let a = tracker.reserve(usd("0.40")).unwrap();
        let b = tracker.reserve(usd("0.40")).unwrap();
        // 0.80 held: a third 0.40 could take the spend to 1.20.
        let err = tracker.reserve(usd("0.40")).unwrap_err();
        assert_eq!(err.to_string(), "--max-cost $1.00 would be exceeded: $0.00 spent and $0.800 held by requests in flight, and the next request could cost up to $0.400. Raise --max-cost or lower --max-tokens (a request holds its worst case until it returns)");
        // Settling frees room, but the tracker has closed: no request after a refusal.
        tracker.settle(a, usd("0.05"));
        tracker.settle(b, usd("0.05"));
        let err = tracker.reserve(usd("0.01")).unwrap_err();
        assert!(matches!(err, CostError::BudgetClosed { .. }), "{err}");
        let l = tracker.ledger();
        assert_eq!(
            (l.spent, l.reserved, l.in_flight, l.settled, l.refused),
            (usd("0.10"), Usd::ZERO, 0, 2, 2)
        );
        assert!(tracker.is_closed());
    }

    #[test]
    fn exactly_the_budget_fits() {
        let tracker = CostTracker::new(usd("0.30"));
        let r = tracker.reserve(usd("0.10")).unwrap();
        let s = tracker.reserve(usd("0.20")).unwrap();
        assert_eq!(tracker.ledger().available(), Usd::ZERO);
        // A free request still fits in a full budget.
        let free = tracker.reserve(Usd::ZERO).unwrap();
        tracker.settle(free, Usd::ZERO);
        tracker.settle(r, usd("0.10"));
        tracker.settle(s, usd("0.20"));
        assert_eq!(tracker.ledger().spent, usd("0.30"));
        assert!(!tracker.is_closed());
    }

    #[test]
    fn a_zero_budget_refuses_any_paid_request() {
        let tracker = CostTracker::new(Usd::ZERO);
        assert!(tracker.reserve(Usd::from_picos(1)).is_err());
    }

    #[test]
    fn overruns_are_recorded_and_stop_the_run() {
        let tracker = CostTracker::new(usd("1"));
        let r = tracker.reserve(usd("0.5")).unwrap();
        let s = tracker.settle(r, usd("1.2"));
        assert!(s.overran());
        let l = tracker.ledger();
        assert_eq!(
            (l.spent, l.overrun, l.available()),
            (usd("1.2"), usd("0.7"), Usd::ZERO)
        );
        assert!(tracker.reserve(Usd::ZERO).is_err());
    }

    #[test]
    fn reserve_request_uses_the_worst_case() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("openai:gpt-4o-mini").unwrap().price;
        let tracker = CostTracker::new(usd("1"));
        // 1,000 prompt tokens at $0.15/MTok + 50 output at $0.60/MTok.
        let r = tracker.reserve_request(price, 1_000, 50).unwrap();
        assert_eq!(r.amount(), usd("0.00018"));
        let actual = price.cost(TokenUsage::from_openai(1_000, 600, 3));
        let s = tracker.settle(r, actual);
        assert!(!s.overran());
        assert_eq!(tracker.ledger().spent, actual);
        assert_eq!(PriceOrigin::Embedded, price.origin);
    }

    /// Many threads reserve and settle against one budget; the total never passes it.
    #[test]
    fn concurrent_requests_never_overshoot() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("anthropic:claude-sonnet-4").unwrap().price;
        let tracker = CostTracker::new(usd("0.50"));
        std::thread::scope(|scope| {
            for t in 0..16u64 {
                let (tracker, price) = (&tracker, price);
                scope.spawn(move || {
                    for i in 0..200u64 {
                        let prompt = 200 + (t * 37 + i * 11) % 800;
                        let Ok(r) = tracker.reserve_request(price, prompt, 64) else {
                            break;
                        };
                        assert_within_budget(tracker);
                        std::thread::yield_now();
                        let out = (t + i) % 65;
                        tracker.settle(r, price.cost(TokenUsage::new(prompt, out)));
                        assert_within_budget(tracker);
                    }
                });
            }
        });
        let l = tracker.ledger();
        assert!(l.spent <= l.budget, "{l:?}");
        assert_eq!(
            (l.reserved, l.in_flight, l.overrun),
            (Usd::ZERO, 0, Usd::ZERO)
        );
        assert!(l.refused > 0 && l.settled > 0, "{l:?}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Reserve a request of this many prompt tokens and this max_tokens.
        Reserve(u64, u64),
        /// Settle the in-flight request at this index (mod their count) with this fraction of
        /// its worst-case tokens, in per mille.
        Settle(usize, u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..5_000, 0u64..2_000).prop_map(|(p, m)| Op::Reserve(p, m)),
            (0usize..64, 0u64..=1_000, 0u64..=1_000).prop_map(|(i, a, b)| Op::Settle(i, a, b)),
        ]
    }

    proptest! {
        /// Any interleaving of reserves and settles, actual usage at most what was reserved:
        /// spent + reserved never passes the budget, and neither does the final spend.
        #[test]
        fn interleaved_reserve_and_settle_never_overshoot(
            budget_micros in 0u64..50_000,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let pricing = Pricing::embedded();
            let price = pricing.lookup("openai:gpt-4.1").unwrap().price;
            let tracker = CostTracker::new(Usd::from_picos(u128::from(budget_micros) * 1_000_000));
            let mut in_flight: Vec<(Reservation, u64, u64)> = Vec::new();
            let mut refused_once = false;
            for op in ops {
                match op {
                    Op::Reserve(prompt, max) => match tracker.reserve_request(price, prompt, max) {
                        Ok(r) => {
                            prop_assert!(!refused_once, "granted after a refusal");
                            in_flight.push((r, prompt, max));
                        }
                        Err(_) => refused_once = true,
                    },
                    Op::Settle(i, cached_pm, out_pm) if !in_flight.is_empty() => {
                        let (r, prompt, max) = in_flight.swap_remove(i % in_flight.len());
                        let cached = prompt * cached_pm / 1_000;
                        let usage = TokenUsage::from_openai(prompt, cached, max * out_pm / 1_000);
                        let s = tracker.settle(r, price.cost(usage));
                        prop_assert!(!s.overran());
                    }
                    Op::Settle(..) => {}
                }
                let l = tracker.ledger();
                prop_assert!(l.spent + l.reserved <= l.budget, "{:?}", l);
            }
            for (r, prompt, max) in in_flight {
                tracker.settle(r, price.worst_case(prompt, max));
            }
            let l = tracker.ledger();
            prop_assert!(l.spent <= l.budget, "{:?}", l);
            prop_assert_eq!(l.reserved, Usd::ZERO);
        }
    }
}
