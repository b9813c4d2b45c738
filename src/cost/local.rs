//! Local models in the API's unit, and the volume at which hosting one pays off.
//!
//! A local model has no per-token price; it has a machine billed by the hour (`--hourly-cost`)
//! and a measured throughput. Cost per 1,000 queries = hourly cost / queries served per hour
//! x 1,000, where queries per hour = items/s x 3,600 x utilisation. Utilisation is the share of
//! paid hours the machine is actually busy: 100% (the default) is the cheapest case, a machine
//! saturated around the clock; a service idle half the time pays double per query. The report
//! states the utilisation it used, because the number means little without it.
//!
//! [`break_even`]: the monthly volume at which fixed monthly hosting plus a one-off cost (e.g.
//! fine-tuning) spread over a number of months equals what the API would charge for that
//! volume. With 1 month of amortisation it is the brief's plain "hosting + one-off = API cost
//! per query x volume".

use std::fmt;

use serde::Serialize;

use crate::cost::error::CostError;
use crate::cost::estimate::thousands;
use crate::cost::usd::Usd;

/// Share of paid time the machine is busy, in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Utilisation(f64);

impl Utilisation {
    /// Busy all the time it is paid for: the default.
    pub const FULL: Utilisation = Utilisation(1.0);

    pub fn new(fraction: f64) -> Result<Self, CostError> {
        if fraction.is_finite() && fraction > 0.0 && fraction <= 1.0 {
            Ok(Self(fraction))
        } else {
            Err(CostError::BadUtilisation { value: fraction })
        }
    }

    pub fn fraction(self) -> f64 {
        self.0
    }
}

impl Default for Utilisation {
    fn default() -> Self {
        Self::FULL
    }
}

impl fmt::Display for Utilisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}% busy", format_trimmed(self.0 * 100.0, 1))
    }
}

/// A local model's cost per 1,000 queries and what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalCost {
    pub hourly: Usd,
    pub items_per_second: f64,
    pub utilisation: Utilisation,
    pub per_thousand: Usd,
}

impl LocalCost {
    /// Cost of one query (the per-1,000 figure / 1,000, rounded to the picodollar).
    pub fn per_query(&self) -> Usd {
        self.per_thousand.mul_div(1, 1_000).unwrap_or(Usd::ZERO)
    }
}

/// $ per 1,000 queries of a machine costing `hourly` that serves `items_per_second` when busy,
/// busy `utilisation` of the time. A free machine (`hourly` 0) costs 0.
pub fn local_cost(
    hourly: Usd,
    items_per_second: f64,
    utilisation: Utilisation,
) -> Result<LocalCost, CostError> {
    if !(items_per_second.is_finite() && items_per_second > 0.0) {
        return Err(CostError::BadThroughput {
            value: items_per_second,
        });
    }
    let queries_per_hour = items_per_second * 3_600.0 * utilisation.fraction();
    // Float because the throughput is a measurement; the result is rounded to the picodollar.
    let picos = hourly.picos() as f64 * 1_000.0 / queries_per_hour;
    let per_thousand = Usd::from_picos(picos.round() as u128);
    Ok(LocalCost {
        hourly,
        items_per_second,
        utilisation,
        per_thousand,
    })
}

impl fmt::Display for LocalCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per 1,000 queries ({}/h machine, {} items/s measured, {})",
            self.per_thousand,
            self.hourly,
            format_trimmed(self.items_per_second, 1),
            self.utilisation
        )
    }
}

/// What a break-even rests on. `local_per_query` is the marginal cost of a local query on top
/// of the fixed hosting (0 for a machine paid by the month; [`LocalCost::per_query`] for one
/// paid by the hour and only while used).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakEvenInputs {
    pub monthly_hosting: Usd,
    pub one_off: Usd,
    /// Months the one-off cost is spread over (>= 1).
    pub amortise_months: u32,
    pub api_per_query: Usd,
    pub local_per_query: Usd,
}

/// The answer of [`break_even`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakEven {
    /// Local costs no more than the API from this many queries a month on (the smallest whole
    /// volume where it does; 0 when there is no fixed cost).
    AtMonthlyVolume(u128),
    /// Each local query costs at least as much as an API query, and there is a fixed cost on
    /// top: the API is cheaper at every volume.
    Never,
}

impl fmt::Display for BreakEven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakEven::AtMonthlyVolume(0) => {
                f.write_str("local is no dearer than the API at any volume")
            }
            BreakEven::AtMonthlyVolume(v) => match u64::try_from(*v) {
                Ok(v) => write!(f, "local is cheaper from {} queries a month", thousands(v)),
                Err(_) => write!(f, "local is cheaper from {v} queries a month"),
            },
            BreakEven::Never => f.write_str("the API is cheaper at every volume"),
        }
    }
}

/// Smallest monthly volume V with
/// `monthly_hosting + one_off / amortise_months + local_per_query x V <= api_per_query x V`,
/// computed exactly: V = ceil((monthly x months + one_off) / (months x (api - local))).
pub fn break_even(inputs: &BreakEvenInputs) -> Result<BreakEven, CostError> {
    if inputs.amortise_months == 0 {
        return Err(CostError::ZeroAmortisation);
    }
    let months = u128::from(inputs.amortise_months);
    let fixed = inputs
        .monthly_hosting
        .picos()
        .saturating_mul(months)
        .saturating_add(inputs.one_off.picos());
    if fixed == 0 && inputs.api_per_query >= inputs.local_per_query {
        return Ok(BreakEven::AtMonthlyVolume(0));
    }
    let margin = inputs
        .api_per_query
        .saturating_sub(inputs.local_per_query)
        .picos();
    if margin == 0 {
        return Ok(BreakEven::Never);
    }
    Ok(BreakEven::AtMonthlyVolume(
        fixed.div_ceil(margin.saturating_mul(months)),
    ))
}

/// Fixed-point with at most `decimals` decimals, trailing zeros dropped: 100 -> "100",
/// 204.56 -> "204.6" (1 decimal).
fn format_trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    #[test]
    fn per_thousand_from_hourly_cost_and_throughput() {
        // $3.60/h at 1 item/s, always busy: 3,600 queries for $3.60 -> $1 per 1,000.
        let c = local_cost(usd("3.60"), 1.0, Utilisation::FULL).unwrap();
        assert_eq!(c.per_thousand, usd("1"));
        assert_eq!(c.per_query(), usd("0.001"));
        assert_eq!(
            c.to_string(),
            "$1.00 per 1,000 queries ($3.60/h machine, 1 items/s measured, 100% busy)"
        );
        // Half busy: twice the cost per query.
        let half = local_cost(usd("3.60"), 1.0, Utilisation::new(0.5).unwrap()).unwrap();
        assert_eq!(half.per_thousand, usd("2"));
        assert!(half.to_string().ends_with("50% busy)"), "{half}");
        // README's MiniLM: 204.6 items/s on a $1.20/h machine.
        let minilm = local_cost(usd("1.20"), 204.6, Utilisation::default()).unwrap();
        assert_eq!(minilm.per_thousand, Usd::from_picos(1_629_195_178)); // 1.2e15 / 736,560, rounded
        assert!(
            minilm
                .to_string()
                .starts_with("$0.00163 per 1,000 queries ($1.20/h machine, 204.6 items/s"),
            "{minilm}"
        );
    }

    #[test]
    fn a_free_machine_costs_nothing() {
        assert_eq!(
            local_cost(Usd::ZERO, 10.0, Utilisation::FULL)
                .unwrap()
                .per_thousand,
            Usd::ZERO
        );
    }

    #[test]
    fn rejects_unmeasured_throughput_and_bad_utilisation() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    local_cost(usd("1"), bad, Utilisation::FULL),
                    Err(CostError::BadThroughput { .. })
                ),
                "{bad}"
            );
        }
        for bad in [0.0, -0.1, 1.01, f64::NAN] {
            assert!(Utilisation::new(bad).is_err(), "{bad}");
        }
        assert_eq!(Utilisation::new(1.0).unwrap(), Utilisation::FULL);
        assert_eq!(Utilisation::new(0.125).unwrap().to_string(), "12.5% busy");
    }

    fn inputs(
        monthly: &str,
        one_off: &str,
        months: u32,
        api: &str,
        local: &str,
    ) -> BreakEvenInputs {
        BreakEvenInputs {
            monthly_hosting: usd(monthly),
            one_off: usd(one_off),
            amortise_months: months,
            api_per_query: usd(api),
            local_per_query: usd(local),
        }
    }

    #[test]
    fn break_even_known_values() {
        // $500/month hosting + $100 fine-tuning in the first month vs $0.001 per API query:
        // 600,000 queries.
        let be = break_even(&inputs("500", "100", 1, "0.001", "0")).unwrap();
        assert_eq!(be, BreakEven::AtMonthlyVolume(600_000));
        assert_eq!(
            be.to_string(),
            "local is cheaper from 600,000 queries a month"
        );
        // The same one-off over 12 months: (6,000 + 100) / (12 x 0.001) = 508,333.3 -> 508,334.
        assert_eq!(
            break_even(&inputs("500", "100", 12, "0.001", "0")).unwrap(),
            BreakEven::AtMonthlyVolume(508_334)
        );
        // A marginal local cost narrows the margin: 600 / (0.001 - 0.0004) = 1,000,000.
        assert_eq!(
            break_even(&inputs("500", "100", 1, "0.001", "0.0004")).unwrap(),
            BreakEven::AtMonthlyVolume(1_000_000)
        );
    }

    #[test]
    fn break_even_at_the_volume_costs_are_equal_or_local_is_cheaper() {
        let i = inputs("123.45", "67.89", 3, "0.000731", "0.000052");
        let BreakEven::AtMonthlyVolume(v) = break_even(&i).unwrap() else {
            panic!()
        };
        let local = |v: u128| {
            i.monthly_hosting.picos() * 3 + i.one_off.picos() + 3 * v * i.local_per_query.picos()
        };
        let api = |v: u128| 3 * v * i.api_per_query.picos();
        assert!(local(v) <= api(v));
        assert!(local(v - 1) > api(v - 1));
    }

    #[test]
    fn break_even_edge_cases() {
        assert_eq!(
            break_even(&inputs("0", "0", 1, "0.001", "0")).unwrap(),
            BreakEven::AtMonthlyVolume(0)
        );
        assert_eq!(
            break_even(&inputs("0", "0", 1, "0", "0")).unwrap(),
            BreakEven::AtMonthlyVolume(0)
        );
        assert_eq!(
            break_even(&inputs("10", "0", 1, "0.001", "0.001")).unwrap(),
            BreakEven::Never
        );
        assert_eq!(
            break_even(&inputs("10", "0", 1, "0", "0")).unwrap(),
            BreakEven::Never
        );
        assert_eq!(
            break_even(&inputs("0", "0", 1, "0.001", "0.002")).unwrap(),
            BreakEven::Never
        );
        assert_eq!(
            BreakEven::Never.to_string(),
            "the API is cheaper at every volume"
        );
        assert!(matches!(
            break_even(&inputs("1", "1", 0, "1", "0")),
            Err(CostError::ZeroAmortisation)
        ));
    }
}
