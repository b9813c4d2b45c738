//! The verdict in plain words, and the number formats every suite report shares.

use super::analysis::{find, pct};
use super::summary::{ModelSummary, Summary, TrainingCost};
use crate::cost::cascade::CascadeCurve;
use crate::suite::ModelKind;

/// Sentences, most important first: the recommendation, whether its gap to the most accurate
/// model is real, what the APIs cost next to it, the break-even, and who missed which goal.
pub fn verdict(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    match s.recommended.as_deref().and_then(|name| find(s, name)) {
        Some(rec) => {
            out.push(format!("Recommended: {}.", describe_model(rec, s)));
            out.extend(against_most_accurate(s, rec));
            out.extend(also_good_enough(s, rec));
            out.extend(api_costs(s, rec));
        }
        None => out.push(no_recommendation(s)),
    }
    out.extend(
        s.break_even
            .iter()
            .map(|b| format!("Break-even: {}.", b.text)),
    );
    if let Some(c) = &s.cascade {
        out.push(c.text.clone());
    }
    out.extend(missed_goals(s));
    for n in &s.not_evaluated {
        out.push(format!(
            "Not evaluated: {} ({}).",
            n.name,
            first_line(&n.reason)
        ));
    }
    out
}

fn describe_model(m: &ModelSummary, s: &Summary) -> String {
    let mut text = format!(
        "{} ({}): accuracy {} (95% CI {}-{}), macro-F1 {:.3}",
        m.name,
        kind_words(m.kind),
        pct(m.accuracy),
        pct(m.accuracy_ci.lo),
        pct(m.accuracy_ci.hi),
        m.macro_f1
    );
    if let Some(l) = &m.latency {
        text += &format!(
            ", p{} {}",
            s.goals.slo_percentile,
            fmt_ms(l.at_slo_percentile_ms)
        );
    }
    if let Some(usd) = m.usd_per_1000 {
        text += &format!(", {} per 1,000 queries", fmt_usd(usd));
    }
    if let Some(t) = &m.training {
        text += &format!(", trained ({}) in {}", t.recipe, fmt_seconds(t.seconds));
        if let Some(usd) = t.usd {
            text += &format!(" for {}", fmt_usd(usd));
        }
    }
    text
}

fn against_most_accurate(s: &Summary, rec: &ModelSummary) -> Option<String> {
    let best = s.most_accurate.as_deref()?;
    if best == rec.name {
        return Some(format!(
            "It is also the most accurate of the {} models evaluated.",
            s.models.len()
        ));
    }
    let c = s.comparisons.iter().find(|c| c.model == rec.name)?;
    Some(format!(
        "Against {best}, the most accurate: {}.",
        trim_period(&c.text)
    ))
}

/// The other models that meet every goal, with what separates them from the most accurate:
/// the runner-up a team might prefer for reasons the table cannot see.
fn also_good_enough(s: &Summary, rec: &ModelSummary) -> Option<String> {
    let others: Vec<String> = s
        .models
        .iter()
        .filter(|m| m.name != rec.name && super::analysis::is_good_enough(m))
        .map(|m| {
            let cost = m.usd_per_1000.map_or("cost unknown".into(), |c| {
                format!("{} per 1,000", fmt_usd(c))
            });
            let test = s
                .comparisons
                .iter()
                .find(|c| c.model == m.name)
                .map(|c| {
                    format!(
                        ", McNemar p = {} against {}",
                        fmt_p(c.paired.mcnemar_p),
                        c.reference
                    )
                })
                .unwrap_or_default();
            format!("{} ({}, {}{test})", m.name, pct(m.accuracy), cost)
        })
        .collect();
    (!others.is_empty()).then(|| format!("Also good enough: {}.", others.join("; ")))
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.2}")
    }
}

/// What each API costs next to the recommended model.
fn api_costs(s: &Summary, rec: &ModelSummary) -> Vec<String> {
    let Some(rec_cost) = rec.usd_per_1000.filter(|c| *c > 0.0) else {
        return Vec::new();
    };
    s.models
        .iter()
        .filter(|m| m.kind == ModelKind::Api && m.name != rec.name)
        .filter_map(|m| {
            let cost = m.usd_per_1000?;
            Some(format!(
                "{} costs {} per 1,000 queries, {} the recommended model's.",
                m.name,
                fmt_usd(cost),
                ratio_words(cost / rec_cost)
            ))
        })
        .collect()
}

fn no_recommendation(s: &Summary) -> String {
    if s.models.is_empty() {
        return "No model has results: nothing to recommend.".into();
    }
    let priced = s.models.iter().filter(|m| m.usd_per_1000.is_some()).count();
    if priced == 0 {
        return "No recommendation: no model has a known cost (set [costs] hourly_usd for local models, prices for API models).".into();
    }
    let floor_ok: Vec<&str> = names(s, |m| m.meets_floor != Some(false));
    let slo_ok: Vec<&str> = names(s, |m| m.meets_slo != Some(false));
    format!(
        "No model meets every goal. Accurate enough ({}): {}. Within the latency objective: {}.",
        s.goals.floor_basis,
        list_or_none(&floor_ok),
        list_or_none(&slo_ok)
    )
}

fn missed_goals(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    let below: Vec<String> = s
        .models
        .iter()
        .filter(|m| m.meets_floor == Some(false))
        .map(|m| format!("{} ({})", m.name, pct(m.accuracy)))
        .collect();
    if !below.is_empty() {
        out.push(format!(
            "Not accurate enough ({}): {}.",
            s.goals.floor_basis,
            below.join(", ")
        ));
    }
    if let Some(slo) = s.goals.slo_latency_ms {
        let over: Vec<String> = s
            .models
            .iter()
            .filter(|m| m.meets_slo == Some(false))
            .map(|m| match &m.latency {
                Some(l) => format!("{} ({})", m.name, fmt_ms(l.at_slo_percentile_ms)),
                None => format!("{} (latency not measured)", m.name),
            })
            .collect();
        if !over.is_empty() {
            out.push(format!(
                "Over the latency objective (p{} <= {}): {}.",
                s.goals.slo_percentile,
                fmt_ms(slo),
                over.join(", ")
            ));
        }
    }
    out
}

/// A training run in a table cell: `full 3.2 min ($0.0048)`.
pub fn training_text(t: &TrainingCost) -> String {
    match t.usd {
        Some(usd) => format!("{} {} ({})", t.recipe, fmt_seconds(t.seconds), fmt_usd(usd)),
        None => format!("{} {}", t.recipe, fmt_seconds(t.seconds)),
    }
}

/// One sentence on the cascade's best threshold.
pub fn describe_cascade(local: &str, fallback: &str, curve: &CascadeCurve) -> String {
    match &curve.best {
        Some(p) => format!(
            "Cascade: {local} answers when its top probability is at least {:.2}, else {fallback}: {} answered locally, accuracy {}, {} per 1,000 queries.",
            p.threshold,
            pct(p.share_local),
            pct(p.accuracy),
            fmt_usd(p.usd_per_1000)
        ),
        None if curve.floor.is_some() => format!(
            "Cascade: no threshold of {local} in front of {fallback} meets the accuracy floor."
        ),
        None => describe_cascade_without_floor(local, fallback, curve),
    }
}

/// Without a floor there is no "cheapest good enough" point: say where the best accuracy is
/// and what it costs.
fn describe_cascade_without_floor(local: &str, fallback: &str, curve: &CascadeCurve) -> String {
    let best = curve.points.iter().reduce(|best, p| {
        let better = p.accuracy > best.accuracy
            || (p.accuracy == best.accuracy && p.usd_per_1000 < best.usd_per_1000);
        if better {
            p
        } else {
            best
        }
    });
    match best {
        Some(p) => format!(
            "Cascade ({local} first, {fallback} when unsure; no floor set): the best accuracy, {}, comes at threshold {:.2} with {} answered locally, {} per 1,000 queries.",
            pct(p.accuracy),
            p.threshold,
            pct(p.share_local),
            fmt_usd(p.usd_per_1000)
        ),
        None => format!("Cascade: {local} and {fallback} share no items."),
    }
}

fn names(s: &Summary, keep: impl Fn(&ModelSummary) -> bool) -> Vec<&str> {
    s.models
        .iter()
        .filter(|m| keep(m))
        .map(|m| m.name.as_str())
        .collect()
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

pub fn kind_words(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Classifier => "local classifier",
        ModelKind::Trained => "classifier trained here",
        ModelKind::Generative => "local generative model",
        ModelKind::Served => "local model served over HTTP",
        ModelKind::Api => "hosted API",
    }
}

fn ratio_words(r: f64) -> String {
    if (0.95..1.05).contains(&r) {
        "about the same as".into()
    } else if r >= 1.0 {
        format!("{}x", sig(r))
    } else {
        format!("{}x", significant(r, 2))
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn trim_period(text: &str) -> &str {
    text.trim_end_matches('.')
}

/// Two significant figures for ratios: 31.6 -> "32", 2.44 -> "2.4".
fn sig(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Dollars with enough digits to tell small local costs apart: $0.0041, $0.12, $12.50.
pub fn fmt_usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x < 0.01 {
        format!("${}", significant(x, 2))
    } else if x < 100.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.0}")
    }
}

fn significant(x: f64, digits: i32) -> String {
    let decimals = (digits - 1 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn fmt_seconds(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_keep_two_significant_digits_when_small() {
        assert_eq!(fmt_usd(0.004123), "$0.0041");
        assert_eq!(fmt_usd(0.12), "$0.12");
        assert_eq!(fmt_usd(0.0), "$0");
        assert_eq!(fmt_usd(1234.4), "$1234");
        assert_eq!(fmt_usd(0.000051), "$0.000051");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(fmt_ms(13.3), "13 ms");
        assert_eq!(fmt_ms(6.8), "6.8 ms");
        assert_eq!(fmt_ms(1530.0), "1.53 s");
        assert_eq!(fmt_seconds(8.04), "8.0 s");
        assert_eq!(fmt_seconds(172.0), "2.9 min");
    }

    #[test]
    fn ratios_read_as_multiples() {
        assert_eq!(ratio_words(31.6), "32x");
        assert_eq!(ratio_words(2.44), "2.4x");
        assert_eq!(ratio_words(1.0), "about the same as");
        assert_eq!(ratio_words(0.0123), "0.012x");
    }
}
