//! Settings checks shared by the scenarios, so bad input becomes an error
//! value rather than a panic or a silently meaningless run.

use super::{LoadgenError, Sut};

/// A count that must be at least one (query set size, workers, batch cap).
pub(crate) fn at_least_one(name: &'static str, value: usize) -> Result<(), LoadgenError> {
    if value == 0 {
        return Err(invalid(name, "must be at least 1".into()));
    }
    Ok(())
}

/// A percentile strictly between 0 and 1.
pub(crate) fn fraction(name: &'static str, value: f64) -> Result<(), LoadgenError> {
    if !(value > 0.0 && value < 1.0) {
        return Err(invalid(name, format!("must be in (0, 1), got {value}")));
    }
    Ok(())
}

/// A finite, strictly positive number (qps, growth factors).
pub(crate) fn positive(name: &'static str, value: f64) -> Result<(), LoadgenError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(
            name,
            format!("must be finite and > 0, got {value}"),
        ));
    }
    Ok(())
}

/// A finite number >= 0 (SLOs, tolerances).
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<(), LoadgenError> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(invalid(
            name,
            format!("must be finite and >= 0, got {value}"),
        ));
    }
    Ok(())
}

/// Batch size actually used: the requested cap, limited by what the SUT
/// accepts, and never 0 even if a SUT misreports.
pub(crate) fn effective_batch(requested: usize, sut: &dyn Sut) -> usize {
    requested.min(sut.max_batch()).max(1)
}

fn invalid(name: &'static str, reason: String) -> LoadgenError {
    LoadgenError::InvalidSetting { name, reason }
}
