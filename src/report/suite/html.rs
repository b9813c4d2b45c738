//! `report.html`: one self-contained file (inline CSS and SVG, no script, no network) with the
//! verdict on top, the charts, the side-by-side table, the paired tests, the error analysis
//! and the environment at the bottom.

use std::fmt::Write;

use super::analysis::pct;
use super::load::RunData;
use super::summary::{ModelSummary, Summary};
use super::verdict::{fmt_ms, fmt_usd, kind_words, training_text};
use crate::report::charts::{self, CascadeChart, LatencySeries, ScatterChart, ScatterPoint};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:24px;color:#1f2328;line-height:1.45}
h1{margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#59636e}.verdict{background:#f0f7ff;border-left:4px solid #0072b2;padding:12px 20px;margin:16px 0}
.verdict li{margin:4px 0}table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.rec{background:#eefbea}
.no{color:#b42318;font-weight:600}.charts{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.chart{border:1px solid #d0d7de;border-radius:6px;padding:8px}.chart svg{width:100%;height:auto;display:block}
.wide{grid-column:1 / span 2}code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
.env td:first-child{white-space:nowrap;color:#59636e}";

pub fn render_html(s: &Summary, run: &RunData) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>taskbench: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&s.suite)
    );
    let _ = write!(
        h,
        "<h1>taskbench: {}</h1>\n<p class=\"meta\">",
        esc(&s.suite)
    );
    if let Some(d) = &s.description {
        let _ = write!(h, "{}<br>", esc(d));
    }
    let _ = writeln!(
        h,
        "Test data <code>{}</code> &middot; generated {}</p>",
        esc(&s.test_data),
        esc(&s.created_at)
    );
    h += "<section class=\"verdict\" id=\"verdict\"><strong>Verdict</strong><ul>";
    for line in &s.verdict {
        let _ = write!(h, "<li>{}</li>", esc(line));
    }
    h += "</ul></section>\n";
    h += &table(s);
    h += &charts_section(s, run);
    h += &comparisons(s);
    h += &errors(s);
    h += &environment(s);
    h += "</body></html>\n";
    h
}

fn table(s: &Summary) -> String {
    let mut h = format!(
        "<h2>Models</h2><table id=\"models\"><thead><tr><th>Model</th><th>Kind</th><th>n</th><th>Accuracy (95% CI)</th><th>Macro-F1 (95% CI)</th><th>p{} latency</th><th>Items/s</th><th>$ / 1k queries</th><th>Training</th><th>Accuracy goal</th><th>Latency goal</th></tr></thead><tbody>",
        s.goals.slo_percentile
    );
    for m in &s.models {
        let rec = s.recommended.as_deref() == Some(&m.name);
        let _ = write!(
            h,
            "<tr{}><td>{}{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} ({}&ndash;{})</td><td class=\"num\">{:.3} ({:.3}&ndash;{:.3})</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if rec { " class=\"rec\"" } else { "" },
            esc(&m.name),
            if rec { " <strong>(recommended)</strong>" } else { "" },
            kind_words(m.kind),
            m.items,
            pct(m.accuracy),
            pct(m.accuracy_ci.lo),
            pct(m.accuracy_ci.hi),
            m.macro_f1,
            m.macro_f1_ci.lo,
            m.macro_f1_ci.hi,
            latency_cell(m),
            m.items_per_s,
            m.usd_per_1000.map_or("unknown".into(), fmt_usd),
            training_cell(m),
            yes_no(m.meets_floor),
            yes_no(m.meets_slo),
        );
    }
    h += "</tbody></table>\n";
    let _ = writeln!(
        h,
        "<p class=\"meta\">Accuracy goal: {}. {} Cost basis per model is in summary.json. Intervals: Wilson for accuracy, seeded percentile bootstrap for macro-F1.</p>",
        esc(&s.goals.floor_basis),
        match s.goals.slo_latency_ms {
            Some(ms) => format!("Latency objective: p{} &le; {}.", s.goals.slo_percentile, fmt_ms(ms)),
            None => "No latency objective.".into(),
        }
    );
    h
}

fn latency_cell(m: &ModelSummary) -> String {
    match &m.latency {
        Some(l) if l.reliable => fmt_ms(l.at_slo_percentile_ms),
        Some(l) => format!(
            "{} <small>({} samples: too few)</small>",
            fmt_ms(l.at_slo_percentile_ms),
            l.samples
        ),
        None => "&ndash;".into(),
    }
}

fn training_cell(m: &ModelSummary) -> String {
    m.training
        .as_ref()
        .map_or("&ndash;".into(), |t| esc(&training_text(t)))
}

fn yes_no(x: Option<bool>) -> &'static str {
    match x {
        Some(true) => "yes",
        Some(false) => "<span class=\"no\">no</span>",
        None => "&ndash;",
    }
}

fn charts_section(s: &Summary, run: &RunData) -> String {
    let mut h = String::from("<h2>Charts</h2><div class=\"charts\">");
    let floor = s.goals.accuracy_floor.map(|f| (f, "accuracy floor"));
    let points = |x: &dyn Fn(&ModelSummary) -> Option<f64>| -> Vec<ScatterPoint> {
        s.models
            .iter()
            .filter_map(|m| {
                Some(ScatterPoint {
                    label: m.name.clone(),
                    x: x(m)?,
                    y: m.accuracy,
                    highlight: s.recommended.as_deref() == Some(&m.name),
                })
            })
            .collect()
    };
    let cost_points = points(&|m| m.usd_per_1000);
    h += &chart(
        "chart-cost",
        "",
        &charts::scatter(&ScatterChart {
            title: "Accuracy vs cost (Pareto frontier marked)",
            x_label: "$ per 1,000 queries (log scale)",
            y_label: "accuracy",
            points: &cost_points,
            log_x: true,
            pareto_frontier: true,
            x_line: None,
            y_line: floor,
        }),
    );
    let latency_title = format!("p{} latency (ms, log scale)", s.goals.slo_percentile);
    let latency_points = points(&|m| m.latency.as_ref().map(|l| l.at_slo_percentile_ms));
    let slo_label = format!(
        "SLO {}",
        s.goals.slo_latency_ms.map_or(String::new(), fmt_ms)
    );
    h += &chart(
        "chart-latency",
        "",
        &charts::scatter(&ScatterChart {
            title: "Accuracy vs latency",
            x_label: &latency_title,
            y_label: "accuracy",
            points: &latency_points,
            log_x: true,
            pareto_frontier: false,
            x_line: s.goals.slo_latency_ms.map(|ms| (ms, slo_label.as_str())),
            y_line: floor,
        }),
    );
    let series: Vec<LatencySeries> = run
        .models
        .iter()
        .map(|m| LatencySeries {
            label: m.entry.name.clone(),
            samples_ms: m.predictions.iter().filter_map(|p| p.latency_ms).collect(),
        })
        .collect();
    h += &chart(
        "chart-latency-distribution",
        "wide",
        &charts::latency_distribution("Latency per item", &series, s.goals.slo_latency_ms),
    );
    if let Some(e) = &s.errors {
        let title = format!("Confusion matrix of {}", e.model);
        h += &chart(
            "chart-confusion",
            "",
            &charts::confusion_heatmap(&title, &e.labels, &e.confusion),
        );
    }
    if let Some(c) = &s.cascade {
        let p = &c.curve.points;
        let t: Vec<f64> = p.iter().map(|x| x.threshold).collect();
        let acc: Vec<f64> = p.iter().map(|x| x.accuracy).collect();
        let share: Vec<f64> = p.iter().map(|x| x.share_local).collect();
        let usd: Vec<f64> = p.iter().map(|x| x.usd_per_1000).collect();
        let title = format!("Cascade: {} first, {} when unsure", c.local, c.fallback);
        h += &chart(
            "chart-cascade",
            "",
            &charts::cascade(&CascadeChart {
                title: &title,
                thresholds: &t,
                accuracy: &acc,
                share_local: &share,
                usd_per_1000: &usd,
                floor: c.curve.floor,
                chosen: c.curve.best.as_ref().map(|b| b.threshold),
            }),
        );
    }
    h += "</div>\n";
    h
}

fn chart(id: &str, class: &str, svg: &str) -> String {
    format!("<figure class=\"chart {class}\" id=\"{id}\">{svg}</figure>")
}

fn comparisons(s: &Summary) -> String {
    let mut h = String::new();
    if let Some(best) = &s.most_accurate {
        let _ = write!(
            h,
            "<h2>Against the most accurate model ({})</h2><p class=\"meta\">Paired on the same items: McNemar's exact test for accuracy, a paired bootstrap for the macro-F1 difference.</p><ul>",
            esc(best)
        );
        for c in &s.comparisons {
            let _ = write!(h, "<li>{}</li>", esc(&c.text));
        }
        h += "</ul>\n";
    }
    if !s.break_even.is_empty() {
        h += "<h2>Break-even</h2><ul>";
        for b in &s.break_even {
            let _ = write!(h, "<li>{}</li>", esc(&b.text));
        }
        h += "</ul>\n";
    }
    let mistakes: Vec<String> = s
        .models
        .iter()
        .filter_map(|m| {
            let c = m.mistakes.as_ref()?;
            Some(format!(
                "<li>{}: {} per 1,000 queries</li>",
                esc(&m.name),
                fmt_usd(c.usd_per_1000_queries)
            ))
        })
        .collect();
    if !mistakes.is_empty() {
        let _ = writeln!(
            h,
            "<h2>What the mistakes cost</h2><ul>{}</ul>",
            mistakes.concat()
        );
    }
    if !s.not_evaluated.is_empty() {
        h += "<h2>Not evaluated</h2><ul>";
        for n in &s.not_evaluated {
            let _ = write!(h, "<li>{}: {}</li>", esc(&n.name), esc(&n.reason));
        }
        h += "</ul>\n";
    }
    h
}

fn errors(s: &Summary) -> String {
    let Some(e) = &s.errors else {
        return String::new();
    };
    let mut h = format!("<h2>Errors of {}</h2><table><thead><tr><th>Gold</th><th>Predicted</th><th>Items</th></tr></thead><tbody>", esc(&e.model));
    for c in &e.top_confusions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&c.gold),
            esc(&c.predicted),
            c.count
        );
    }
    h += "</tbody></table>\n";
    if let Some(p) = &e.pair {
        let _ = write!(
            h,
            "<p>{} is right where {} is wrong on {} items; the reverse on {}.</p>",
            esc(&p.a),
            esc(&p.b),
            p.a_only_right,
            p.b_only_right
        );
        h += &examples(
            &format!("{} wrong, {} right", p.a, p.b),
            &p.b_only_examples,
            &p.a,
            &p.b,
        );
        h += &examples(
            &format!("{} right, {} wrong", p.a, p.b),
            &p.a_only_examples,
            &p.a,
            &p.b,
        );
    }
    h
}

fn examples(title: &str, items: &[super::summary::ItemExample], a: &str, b: &str) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut h = format!(
        "<h3>{}</h3><table><thead><tr><th>Id</th><th>Text</th><th>Gold</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        esc(title),
        esc(a),
        esc(b)
    );
    for x in items {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.id),
            esc(&x.text),
            esc(&x.gold),
            esc(&x.a_predicted),
            esc(&x.b_predicted)
        );
    }
    h + "</tbody></table>\n"
}

fn environment(s: &Summary) -> String {
    let Some(env) = &s.environment else {
        return String::new();
    };
    let mut h = String::from("<h2>Environment</h2><table class=\"env\" id=\"environment\"><tbody>");
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(env) {
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(&key), esc(&text));
        }
    }
    h + "</tbody></table>\n"
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
