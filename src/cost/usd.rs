//! `Usd`: an amount of US dollars held as whole picodollars (10^-12 $).
//!
//! Why integers: the cheapest listed rate, $0.005 per million tokens, is 5,000 picodollars a
//! token, so every price with up to six decimals in $/MTok is a whole number of picodollars per
//! token. Token counts times such rates are then exact, totals over millions of items do not
//! drift, and `--max-cost` compares exact sums, so "never over budget" is not at the mercy of
//! floating-point rounding. u128 holds 3.4e26 dollars; the arithmetic saturates rather than wraps.
//! Floating point appears only where the inputs are measurements (throughput, utilisation).

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::cost::error::CostError;

/// Picodollars in one dollar.
pub const PICOS_PER_DOLLAR: u128 = 1_000_000_000_000;

/// A non-negative amount of US dollars, exact to 10^-12 $.
///
/// `Display` prints `$` and at least 2 decimals, more below $1 so that 3 significant digits
/// show (`$12.35`, `$0.150`, `$0.000150`, `$0.00`); a precision (`{:.6}`) overrides that.
/// Serializes as a JSON number of dollars (f64), for `results.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd {
    picos: u128,
}

impl Usd {
    pub const ZERO: Usd = Usd { picos: 0 };

    pub const fn from_picos(picos: u128) -> Self {
        Self { picos }
    }

    pub const fn picos(self) -> u128 {
        self.picos
    }

    /// Rounds to the nearest picodollar; `None` for NaN, infinities, negatives and amounts too
    /// large for u128.
    pub fn from_dollars(dollars: f64) -> Option<Self> {
        let picos = dollars * PICOS_PER_DOLLAR as f64;
        // The upper end is 2^128 as f64: anything at or above it does not fit. NaN is outside
        // every range.
        (0.0..3.402_823_669_209_385e38)
            .contains(&picos)
            .then(|| Self {
                picos: picos.round() as u128,
            })
    }

    /// The amount in dollars (rounded to the nearest f64).
    pub fn dollars(self) -> f64 {
        self.picos as f64 / PICOS_PER_DOLLAR as f64
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd::from_picos(self.picos.saturating_sub(other.picos))
    }

    /// `self * numerator / denominator`, rounded half up; `None` when `denominator` is 0.
    pub fn mul_div(self, numerator: u128, denominator: u128) -> Option<Usd> {
        if denominator == 0 {
            return None;
        }
        let product = self.picos.saturating_mul(numerator);
        Some(Usd::from_picos(
            product / denominator + u128::from(product % denominator >= denominator.div_ceil(2)),
        ))
    }

    /// Cost per 1,000 queries from a total over `queries` queries; `None` for 0 queries.
    pub fn per_thousand(total: Usd, queries: u64) -> Option<Usd> {
        total.mul_div(1_000, u128::from(queries))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd::from_picos(self.picos.saturating_add(rhs.picos))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        *self = *self + rhs;
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Usd> for Usd {
    fn sum<I: Iterator<Item = &'a Usd>>(iter: I) -> Usd {
        iter.copied().sum()
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decimals = f
            .precision()
            .unwrap_or_else(|| default_decimals(self.picos))
            .min(12);
        let unit = 10u128.pow(12 - decimals as u32);
        let rounded = self.picos / unit + u128::from(self.picos % unit >= unit.div_ceil(2));
        let scale = 10u128.pow(decimals as u32);
        if decimals == 0 {
            write!(f, "${rounded}")
        } else {
            write!(f, "${}.{:0decimals$}", rounded / scale, rounded % scale)
        }
    }
}

/// Decimals that show 3 significant digits below $1, and cents at or above it.
fn default_decimals(picos: u128) -> usize {
    if picos == 0 || picos >= PICOS_PER_DOLLAR {
        return 2;
    }
    let digits = picos.ilog10() as usize + 1; // 1..=12
    let leading_zeros = 12 - digits;
    (leading_zeros + 3).clamp(2, 12)
}

/// Parses `5`, `0.50`, `$12.5`: a plain decimal, no sign or exponent, at most 12 decimals.
/// Parsed as text, not through f64, so `--max-cost 0.1` is exactly 10 cents.
impl FromStr for Usd {
    type Err = CostError;

    fn from_str(text: &str) -> Result<Self, CostError> {
        let bad = || CostError::BadAmount {
            text: text.to_owned(),
        };
        let digits = text.trim();
        let digits = digits.strip_prefix('$').unwrap_or(digits);
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty())
            || !all_digits(whole)
            || !all_digits(frac)
            || frac.len() > 12
        {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac_picos: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse::<u128>().map_err(|_| bad())? * 10u128.pow(12 - frac.len() as u32)
        };
        whole
            .checked_mul(PICOS_PER_DOLLAR)
            .and_then(|p| p.checked_add(frac_picos))
            .map(Usd::from_picos)
            .ok_or_else(bad)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.dollars())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    #[test]
    fn parses_plain_decimals_exactly() {
        assert_eq!(usd("5").picos(), 5 * PICOS_PER_DOLLAR);
        assert_eq!(usd("0.1").picos(), PICOS_PER_DOLLAR / 10);
        assert_eq!(usd("$12.5"), usd("12.50"));
        assert_eq!(usd(".25"), usd("0.25"));
        assert_eq!(usd("3."), usd("3"));
        assert_eq!(usd("0.000000000001").picos(), 1);
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for text in [
            "",
            "$",
            ".",
            "-1",
            "1e3",
            "abc",
            "1.2.3",
            "0.0000000000001",
            "1,000",
        ] {
            let err = text.parse::<Usd>().unwrap_err();
            assert!(
                err.to_string().contains("not an amount of US dollars"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn displays_three_significant_digits_below_a_dollar() {
        assert_eq!(Usd::ZERO.to_string(), "$0.00");
        assert_eq!(usd("12.345").to_string(), "$12.35");
        assert_eq!(usd("1").to_string(), "$1.00");
        assert_eq!(usd("0.15").to_string(), "$0.150");
        assert_eq!(usd("0.00015").to_string(), "$0.000150");
        assert_eq!(usd("0.0001234").to_string(), "$0.000123");
        assert_eq!(usd("0.000000000001").to_string(), "$0.000000000001");
        assert_eq!(format!("{:.4}", usd("0.15")), "$0.1500");
        assert_eq!(format!("{:.0}", usd("2.5")), "$3");
    }

    #[test]
    fn dollars_round_trip() {
        assert_eq!(Usd::from_dollars(0.15), Some(usd("0.15")));
        assert_eq!(Usd::from_dollars(-0.01), None);
        assert_eq!(Usd::from_dollars(f64::NAN), None);
        assert_eq!(Usd::from_dollars(f64::INFINITY), None);
        assert_eq!(usd("1.5").dollars(), 1.5);
    }

    #[test]
    fn per_thousand_rounds_half_up_and_refuses_zero_queries() {
        assert_eq!(Usd::per_thousand(usd("3"), 1_000), Some(usd("3")));
        assert_eq!(Usd::per_thousand(usd("0.0126"), 280), Some(usd("0.045")));
        assert_eq!(
            Usd::per_thousand(Usd::from_picos(1), 3),
            Some(Usd::from_picos(333))
        );
        assert_eq!(
            Usd::per_thousand(Usd::from_picos(1), 2_000),
            Some(Usd::from_picos(1))
        );
        assert_eq!(Usd::per_thousand(usd("1"), 0), None);
    }

    #[test]
    fn sums_and_saturates() {
        let total: Usd = [usd("0.1"), usd("0.2")].iter().sum();
        assert_eq!(total, usd("0.3")); // exact, unlike 0.1 + 0.2 in f64
        assert_eq!(usd("1").saturating_sub(usd("2")), Usd::ZERO);
        assert_eq!(
            Usd::from_picos(u128::MAX) + usd("1"),
            Usd::from_picos(u128::MAX)
        );
    }

    #[test]
    fn serializes_as_dollars() {
        assert_eq!(serde_json::to_string(&usd("0.25")).unwrap(), "0.25");
    }
}
