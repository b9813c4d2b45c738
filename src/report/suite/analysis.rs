//! From a loaded run to its [`Summary`]: intervals, paired tests against the most accurate
//! model, the floor and the SLO, cost in one unit, break-even volumes, the cascade and the
//! error analysis, and the verdict in words.

use super::load::{LoadedModel, RunData};
use super::summary::*;
use crate::cost::cascade::{cascade_curve, default_thresholds, CascadeInputs};
use crate::cost::{break_even, BreakEven, BreakEvenInputs, Usd};
use crate::metrics::stats::{self, compare_paired, wilson, Verdict};
use crate::suite::ModelKind;

/// Resamples of every bootstrap; 2,000 keeps the 2.5% tails stable to about a tenth of a point.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Seed of every bootstrap, so a rebuilt report prints the same intervals.
pub const BOOTSTRAP_SEED: u64 = 20_261_130;
/// Significance level of the paired tests.
pub const ALPHA: f64 = 0.05;

pub fn summarize(run: &RunData) -> Summary {
    let file = &run.suite.file;
    let mut models: Vec<ModelSummary> = run.models.iter().map(|m| model_summary(run, m)).collect();
    let most_accurate = most_accurate(&models);
    let comparisons = most_accurate
        .map(|best| comparisons(run, best))
        .unwrap_or_default();
    let (floor, floor_basis) = resolve_floor(run, &models);
    apply_goals(&mut models, floor, file.goals.slo_latency_ms, &comparisons);
    let recommended = recommend(&models);
    let goals = GoalsSummary {
        slo_latency_ms: file.goals.slo_latency_ms,
        slo_percentile: file.goals.slo_percentile,
        accuracy_floor: floor,
        floor_basis,
        hourly_usd: file.costs.hourly_usd,
        utilisation: file.costs.utilisation,
        monthly_hosting_usd: file.costs.monthly_hosting_usd,
        amortise_months: file.costs.amortise_months,
    };
    let best_name = most_accurate.map(|i| models[i].name.clone());
    let rec_name = recommended.map(|i| models[i].name.clone());
    let break_even = break_even_rows(run, &models, recommended);
    let cascade = cascade(run, &models, recommended, floor);
    let errors = error_analysis(run, recommended.or(most_accurate));
    let mut summary = Summary {
        schema_version: SUMMARY_SCHEMA_VERSION,
        suite: file.name.clone(),
        description: file.description.clone(),
        created_at: crate::report::results::created_at_now(),
        test_data: run
            .models
            .first()
            .map(|m| m.results.dataset.path.clone())
            .unwrap_or_else(|| file.data.test.display().to_string()),
        goals,
        verdict: Vec::new(),
        recommended: rec_name,
        most_accurate: best_name,
        not_evaluated: not_evaluated(run),
        models,
        comparisons,
        break_even,
        cascade,
        errors,
        environment: run.models.first().map(|m| m.results.environment.clone()),
    };
    summary.verdict = super::verdict::verdict(&summary);
    summary
}

fn model_summary(run: &RunData, m: &LoadedModel) -> ModelSummary {
    let r = &m.results;
    let all: Vec<usize> = (0..m.gold.len()).collect();
    let n_labels = run.labels.len();
    let correct = m
        .gold
        .iter()
        .zip(&m.predicted)
        .filter(|(g, p)| Some(**g) == **p)
        .count();
    let macro_f1_ci = stats::bootstrap_ci(
        m.gold.len(),
        BOOTSTRAP_RESAMPLES,
        BOOTSTRAP_SEED,
        0.95,
        |idx| stats::macro_f1(&m.gold, &m.predicted, n_labels, idx),
    );
    let hourly = run.suite.file.costs.hourly_usd;
    ModelSummary {
        name: m.entry.name.clone(),
        kind: m.entry.kind(),
        status: m.run.status,
        model: r.model.name.clone(),
        items: m.gold.len(),
        accuracy: stats::accuracy(&m.gold, &m.predicted, &all),
        accuracy_ci: wilson(correct, m.gold.len(), 0.95),
        macro_f1: stats::macro_f1(&m.gold, &m.predicted, n_labels, &all),
        macro_f1_ci,
        invalid: m
            .predictions
            .iter()
            .filter(|p| p.error.is_some() || p.predicted == crate::run::generative::INVALID)
            .count(),
        latency: latency_figures(r, run.suite.file.goals.slo_percentile),
        items_per_s: r.throughput.items_per_s,
        usd_per_1000: r.cost.as_ref().map(|c| c.usd_per_1000_queries),
        cost_basis: cost_basis(m),
        training: m.training.as_ref().map(|t| TrainingCost {
            recipe: t.recipe.clone(),
            seconds: t.seconds.training,
            usd: hourly.map(|h| h * t.seconds.training / 3600.0),
            items_per_s: t.train_items_per_second,
        }),
        // Validated against the test labels before the run; the only other labels are
        // predicted ones, which the matrix prices at its default.
        mistakes: run.suite.file.cost_matrix.as_ref().and_then(|matrix| {
            matrix
                .mistake_cost(run.labels.names(), &m.gold, &m.predicted)
                .ok()
        }),
        meets_floor: None,
        meets_slo: None,
        peak_rss_bytes: r.peak_rss_bytes,
    }
}

fn cost_basis(m: &LoadedModel) -> String {
    match (&m.results.cost, m.entry.kind()) {
        (Some(c), _) => c.basis.clone(),
        (None, ModelKind::Api) => {
            "cost unknown: no price for this model in the pricing file ([costs] pricing)".into()
        }
        (None, _) => "cost unknown: set [costs] hourly_usd, the machine's price".into(),
    }
}

fn latency_figures(r: &crate::report::EvalResults, percentile: u8) -> Option<LatencyFigures> {
    let l = r.latency.as_ref()?;
    let s = &l.summary;
    let (at, reliable) = match percentile {
        50 => (s.p50_ms, l.reliable.p50),
        90 => (s.p90_ms, l.reliable.p90),
        99 => (s.p99_ms, l.reliable.p99),
        _ => (s.p95_ms, l.reliable.p95),
    };
    Some(LatencyFigures {
        samples: s.n,
        p50_ms: s.p50_ms,
        p90_ms: s.p90_ms,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
        at_slo_percentile_ms: at,
        reliable,
        includes: l.includes.clone(),
    })
}

/// Highest accuracy; ties go to the higher macro-F1, then the earlier model.
fn most_accurate(models: &[ModelSummary]) -> Option<usize> {
    (0..models.len()).reduce(|best, i| {
        let (a, b) = (&models[i], &models[best]);
        if (a.accuracy, a.macro_f1) > (b.accuracy, b.macro_f1) {
            i
        } else {
            best
        }
    })
}

fn comparisons(run: &RunData, best: usize) -> Vec<Comparison> {
    let reference = &run.models[best];
    run.models
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != best)
        .filter_map(|(_, m)| {
            let (gold, a, b) = paired_items(m, reference);
            // Aligned by construction: an error here would be a bug, not bad input.
            let paired = compare_paired(
                &gold,
                &a,
                &b,
                run.labels.len(),
                BOOTSTRAP_RESAMPLES,
                BOOTSTRAP_SEED,
                ALPHA,
            )
            .ok()?;
            Some(Comparison {
                model: m.entry.name.clone(),
                reference: reference.entry.name.clone(),
                text: paired.describe(&m.entry.name, &reference.entry.name),
                paired,
            })
        })
        .collect()
}

type Paired = (Vec<usize>, Vec<Option<usize>>, Vec<Option<usize>>);

/// The items both models answered (a `limit` can make them differ), in `a`'s order.
pub fn paired_items(a: &LoadedModel, b: &LoadedModel) -> Paired {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for p in &a.predictions {
        let (Some(&i), Some(&j)) = (a.position.get(&p.id), b.position.get(&p.id)) else {
            continue;
        };
        out.0.push(a.gold[i]);
        out.1.push(a.predicted[i]);
        out.2.push(b.predicted[j]);
    }
    out
}

/// The floor as configured; relative floors against the best API's accuracy. Without any
/// floor, "good enough" means not significantly less accurate than the most accurate model.
fn resolve_floor(run: &RunData, models: &[ModelSummary]) -> (Option<f64>, String) {
    let goals = &run.suite.file.goals;
    if let Some(floor) = goals.accuracy_floor {
        return (Some(floor), format!("accuracy at least {}", pct(floor)));
    }
    let best_api = models
        .iter()
        .filter(|m| m.kind == ModelKind::Api)
        .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
    if let Some(share) = goals.accuracy_floor_vs_best_api {
        return match best_api {
            Some(api) => (
                Some(api.accuracy * share),
                format!(
                    "accuracy at least {:.0}% of the best API's ({} at {}): {}",
                    share * 100.0,
                    api.name,
                    pct(api.accuracy),
                    pct(api.accuracy * share)
                ),
            ),
            None => (
                None,
                "no API model was evaluated to set the floor from, so good enough = not significantly less accurate than the most accurate model (McNemar, 5%)".into(),
            ),
        };
    }
    (
        None,
        "no floor set: good enough = not significantly less accurate than the most accurate model (McNemar, 5%)".into(),
    )
}

/// Marks each model against the floor and the SLO. Without a floor, a model meets it unless
/// its paired test found it significantly less accurate than the most accurate model.
fn apply_goals(
    models: &mut [ModelSummary],
    floor: Option<f64>,
    slo_ms: Option<f64>,
    comparisons: &[Comparison],
) {
    for m in models {
        m.meets_floor = Some(match floor {
            Some(f) => m.accuracy + 1e-12 >= f,
            None => !comparisons
                .iter()
                .any(|c| c.model == m.name && significantly_worse(c)),
        });
        m.meets_slo = slo_ms.map(|slo| {
            m.latency
                .as_ref()
                .is_some_and(|l| l.at_slo_percentile_ms <= slo)
        });
    }
}

/// Costs within this share of the cheapest count as equal: a local model's cost comes from
/// throughput measured on a shared machine, which moves 10-20% between runs, so two models of
/// the same architecture must not swap places on noise.
pub const COST_TIE: f64 = 0.2;

/// The cheapest model meeting the floor (or, without one, not significantly worse than the
/// most accurate) and the SLO; among those costing within [`COST_TIE`] of the cheapest, the
/// most accurate.
fn recommend(models: &[ModelSummary]) -> Option<usize> {
    let eligible: Vec<usize> = (0..models.len())
        .filter(|&i| is_good_enough(&models[i]) && models[i].usd_per_1000.is_some())
        .collect();
    let cost = |i: usize| models[i].usd_per_1000.unwrap_or(f64::INFINITY);
    let cheapest = eligible.iter().map(|&i| cost(i)).reduce(f64::min)?;
    eligible
        .into_iter()
        .filter(|&i| cost(i) <= cheapest * (1.0 + COST_TIE))
        .max_by(|&a, &b| {
            let (ma, mb) = (&models[a], &models[b]);
            (ma.accuracy, ma.macro_f1, -cost(a))
                .partial_cmp(&(mb.accuracy, mb.macro_f1, -cost(b)))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
}

/// Floor and SLO as applied by [`apply_goals`].
pub fn is_good_enough(m: &ModelSummary) -> bool {
    m.meets_floor.unwrap_or(true) && m.meets_slo.unwrap_or(true)
}

fn not_evaluated(run: &RunData) -> Vec<NotEvaluated> {
    run.record
        .models
        .iter()
        .filter(|r| !r.has_results())
        .map(|r| NotEvaluated {
            name: r.name.clone(),
            kind: r.kind,
            status: r.status,
            reason: r.message.clone().unwrap_or_default(),
        })
        .collect()
}

/// Break-even of the recommended local model (else the most accurate local one) against
/// every API model with a known cost.
fn break_even_rows(
    run: &RunData,
    models: &[ModelSummary],
    recommended: Option<usize>,
) -> Vec<BreakEvenRow> {
    let local = recommended
        .filter(|&i| models[i].kind.is_local())
        .or_else(|| best_where(models, |m| m.kind.is_local() && m.usd_per_1000.is_some()));
    let Some(local) = local.map(|i| &models[i]) else {
        return Vec::new();
    };
    let costs = &run.suite.file.costs;
    models
        .iter()
        .filter(|m| m.kind == ModelKind::Api)
        .filter_map(|api| {
            let api_per_query = Usd::from_dollars(api.usd_per_1000? / 1000.0)?;
            let local_per_query = Usd::from_dollars(local.usd_per_1000? / 1000.0)?;
            let monthly = costs.monthly_hosting_usd.and_then(Usd::from_dollars);
            let inputs = BreakEvenInputs {
                monthly_hosting: monthly.unwrap_or(Usd::ZERO),
                one_off: local
                    .training
                    .as_ref()
                    .and_then(|t| t.usd)
                    .and_then(Usd::from_dollars)
                    .unwrap_or(Usd::ZERO),
                amortise_months: costs.amortise_months.max(1),
                // A machine rented by the month costs nothing more per query.
                local_per_query: if monthly.is_some() {
                    Usd::ZERO
                } else {
                    local_per_query
                },
                api_per_query,
            };
            let result = break_even(&inputs).ok()?;
            let monthly_queries = match result {
                BreakEven::AtMonthlyVolume(v) => Some(v),
                BreakEven::Never => None,
            };
            Some(BreakEvenRow {
                local: local.name.clone(),
                api: api.name.clone(),
                monthly_queries,
                text: format!("{} vs {}: {result}", local.name, api.name),
            })
        })
        .collect()
}

fn best_where(models: &[ModelSummary], keep: impl Fn(&ModelSummary) -> bool) -> Option<usize> {
    (0..models.len())
        .filter(|&i| keep(&models[i]))
        .max_by(|&a, &b| models[a].accuracy.total_cmp(&models[b].accuracy))
}

/// The cascade of the recommended local model (else the most accurate local one with
/// probabilities) in front of the most accurate API (else the most accurate other model).
fn cascade(
    run: &RunData,
    models: &[ModelSummary],
    recommended: Option<usize>,
    floor: Option<f64>,
) -> Option<CascadeSummary> {
    let has_probs = |i: usize| {
        run.models[i]
            .predictions
            .iter()
            .any(|p| !p.probabilities.0.is_empty())
    };
    let local = recommended
        .filter(|&i| models[i].kind.is_local() && has_probs(i))
        .or_else(|| {
            best_where(models, |m| m.kind.is_local() && m.usd_per_1000.is_some())
                .filter(|&i| has_probs(i))
        })?;
    // Deferring only makes sense to something better: an API, or a more accurate model.
    let fallback = best_where(models, |m| {
        m.kind == ModelKind::Api && m.usd_per_1000.is_some()
    })
    .or_else(|| {
        (0..models.len())
            .filter(|&i| i != local && models[i].usd_per_1000.is_some())
            .filter(|&i| models[i].accuracy > models[local].accuracy)
            .max_by(|&a, &b| models[a].accuracy.total_cmp(&models[b].accuracy))
    })?;
    let (l, f) = (&run.models[local], &run.models[fallback]);
    let (gold, local_pred, fallback_pred) = paired_items(l, f);
    let top: Vec<Option<f64>> = l
        .predictions
        .iter()
        .filter(|p| p.gold.is_some() && f.position.contains_key(&p.id))
        .map(|p| {
            p.probabilities
                .0
                .iter()
                .map(|(_, v)| f64::from(*v))
                .filter(|v| v.is_finite())
                .reduce(f64::max)
        })
        .collect();
    let thresholds = default_thresholds(&top);
    let inputs = CascadeInputs {
        gold: &gold,
        local_pred: &local_pred,
        local_top_prob: &top,
        api_pred: &fallback_pred,
        local_usd_per_query: models[local].usd_per_1000? / 1000.0,
        api_usd_per_query: models[fallback].usd_per_1000? / 1000.0,
    };
    let curve = cascade_curve(&inputs, &thresholds, floor).ok()?;
    let text =
        super::verdict::describe_cascade(&models[local].name, &models[fallback].name, &curve);
    Some(CascadeSummary {
        local: models[local].name.clone(),
        fallback: models[fallback].name.clone(),
        curve,
        text,
    })
}

fn error_analysis(run: &RunData, focus: Option<usize>) -> Option<ErrorAnalysis> {
    let m = &run.models[focus?];
    let k = run.labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (g, p) in m.gold.iter().zip(&m.predicted) {
        if let Some(p) = p {
            confusion[*g][*p] += 1;
        }
    }
    // Only the labels this model's items use: no empty "(invalid)" row for a model that
    // never answered off the list.
    let used: Vec<usize> = (0..k)
        .filter(|&i| confusion[i].iter().sum::<usize>() > 0 || confusion.iter().any(|r| r[i] > 0))
        .collect();
    let names = run.labels.names();
    let mut top: Vec<Confusion> = (0..k)
        .flat_map(|g| (0..k).map(move |p| (g, p)))
        .filter(|&(g, p)| g != p && confusion[g][p] > 0)
        .map(|(g, p)| Confusion {
            gold: names[g].clone(),
            predicted: names[p].clone(),
            count: confusion[g][p],
        })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.gold.cmp(&b.gold)));
    top.truncate(8);
    Some(ErrorAnalysis {
        model: m.entry.name.clone(),
        labels: used.iter().map(|&i| names[i].clone()).collect(),
        confusion: used
            .iter()
            .map(|&g| used.iter().map(|&p| confusion[g][p]).collect())
            .collect(),
        top_confusions: top,
        pair: disagreements(run, focus?),
    })
}

/// Items the local model gets wrong that the best API (or other model) gets right, and the
/// reverse.
fn disagreements(run: &RunData, focus: usize) -> Option<Disagreements> {
    let is_api = |i: usize| run.models[i].entry.kind() == ModelKind::Api;
    let accuracy = |i: usize| {
        let m = &run.models[i];
        let right = m
            .gold
            .iter()
            .zip(&m.predicted)
            .filter(|(g, p)| Some(**g) == **p)
            .count();
        right as f64 / m.gold.len().max(1) as f64
    };
    let others: Vec<usize> = (0..run.models.len()).filter(|&i| i != focus).collect();
    let other = others
        .iter()
        .copied()
        .filter(|&i| is_api(i) != is_api(focus))
        .max_by(|&a, &b| accuracy(a).total_cmp(&accuracy(b)))
        .or_else(|| {
            others
                .iter()
                .copied()
                .max_by(|&a, &b| accuracy(a).total_cmp(&accuracy(b)))
        })?;
    let (a, b) = (&run.models[focus], &run.models[other]);
    let names = run.labels.names();
    let mut out = Disagreements {
        a: a.entry.name.clone(),
        b: b.entry.name.clone(),
        a_only_right: 0,
        b_only_right: 0,
        a_only_examples: Vec::new(),
        b_only_examples: Vec::new(),
    };
    for p in &a.predictions {
        let (Some(&i), Some(&j)) = (a.position.get(&p.id), b.position.get(&p.id)) else {
            continue;
        };
        let gold = a.gold[i];
        let a_right = a.predicted[i] == Some(gold);
        let b_right = b.predicted[j] == Some(gold);
        let name = |x: Option<usize>| x.map_or("(none)".to_string(), |x| names[x].clone());
        let example = || ItemExample {
            id: p.id.clone(),
            text: p.text.clone(),
            gold: names[gold].clone(),
            a_predicted: name(a.predicted[i]),
            b_predicted: name(b.predicted[j]),
        };
        if a_right && !b_right {
            out.a_only_right += 1;
            if out.a_only_examples.len() < 5 {
                out.a_only_examples.push(example());
            }
        } else if b_right && !a_right {
            out.b_only_right += 1;
            if out.b_only_examples.len() < 5 {
                out.b_only_examples.push(example());
            }
        }
    }
    Some(out)
}

/// `0.8964` -> `89.6%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Whether a comparison says the model is significantly less accurate than the reference.
pub fn significantly_worse(c: &Comparison) -> bool {
    c.paired.verdict == Verdict::BBetter
}

/// The model summary's index by name.
pub fn find<'a>(summary: &'a Summary, name: &str) -> Option<&'a ModelSummary> {
    summary.models.iter().find(|m| m.name == name)
}
