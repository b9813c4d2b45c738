//! `report.md` (for pull requests) and the verdict printed on the terminal.

use std::fmt::Write;

use super::analysis::pct;
use super::summary::{ModelSummary, Summary};
use super::verdict::{fmt_ms, fmt_usd, kind_words, training_text};

/// The whole Markdown report.
pub fn render_markdown(s: &Summary) -> String {
    let mut md = format!("# taskbench: {}\n\n", s.suite);
    if let Some(d) = &s.description {
        let _ = writeln!(md, "{d}\n");
    }
    let _ = writeln!(
        md,
        "Test data: `{}`. Generated {}.\n",
        s.test_data, s.created_at
    );
    md += "## Verdict\n\n";
    for line in &s.verdict {
        let _ = writeln!(md, "- {line}");
    }
    md += "\n## Models\n\n";
    md += &table(s);
    md += &goals_line(s);
    md += &comparisons(s);
    md += &errors(s);
    md += &environment(s);
    md
}

/// The verdict and an aligned table, for the end of `taskbench run`.
pub fn render_terminal(s: &Summary) -> String {
    let mut out = String::from("\nVerdict\n");
    for line in &s.verdict {
        let _ = writeln!(out, "  - {line}");
    }
    out.push('\n');
    let mut rows = vec![[
        "model".to_string(),
        "n".into(),
        "accuracy (95% CI)".into(),
        "macro-F1".into(),
        format!("p{}", s.goals.slo_percentile),
        "$/1k queries".into(),
        "training".into(),
        "goals".into(),
    ]];
    for m in &s.models {
        let rec = s.recommended.as_deref() == Some(&m.name);
        rows.push([
            format!("{}{}", if rec { "* " } else { "  " }, m.name),
            m.items.to_string(),
            format!(
                "{} ({}-{})",
                pct(m.accuracy),
                pct(m.accuracy_ci.lo),
                pct(m.accuracy_ci.hi)
            ),
            format!("{:.3}", m.macro_f1),
            m.latency
                .as_ref()
                .map_or("-".into(), |l| fmt_ms(l.at_slo_percentile_ms)),
            m.usd_per_1000.map_or("unknown".into(), fmt_usd),
            training_cell(m),
            goals_cell(m).replace("**", ""),
        ]);
    }
    out += &aligned(&rows);
    out += "  * recommended\n";
    out
}

/// Columns padded to their widest cell; numbers would read better right-aligned, but the
/// cells mix numbers and words, so left alignment keeps every column straight.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

fn table(s: &Summary) -> String {
    let mut md = format!(
        "| Model | Kind | n | Accuracy (95% CI) | Macro-F1 (95% CI) | p{} latency | Items/s | $ / 1k queries | Training | Meets goals |\n",
        s.goals.slo_percentile
    );
    md += "|---|---|---:|---|---|---:|---:|---:|---|---|\n";
    for m in &s.models {
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} ({}-{}) | {:.3} ({:.3}-{:.3}) | {} | {:.1} | {} | {} | {} |",
            escape(&m.name),
            if s.recommended.as_deref() == Some(&m.name) {
                " **(recommended)**"
            } else {
                ""
            },
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
            goals_cell(m),
        );
    }
    md.push('\n');
    md
}

fn latency_cell(m: &ModelSummary) -> String {
    match &m.latency {
        Some(l) if l.reliable => fmt_ms(l.at_slo_percentile_ms),
        Some(l) => format!(
            "{} (only {} samples)",
            fmt_ms(l.at_slo_percentile_ms),
            l.samples
        ),
        None => "-".into(),
    }
}

fn training_cell(m: &ModelSummary) -> String {
    m.training.as_ref().map_or("-".into(), training_text)
}

fn goals_cell(m: &ModelSummary) -> String {
    let mark = |x: Option<bool>, what: &str| match x {
        Some(true) => format!("{what} yes"),
        Some(false) => format!("{what} **no**"),
        None => format!("{what} -"),
    };
    format!(
        "{}, {}",
        mark(m.meets_floor, "accuracy"),
        mark(m.meets_slo, "latency")
    )
}

fn goals_line(s: &Summary) -> String {
    let g = &s.goals;
    let mut line = format!("Accuracy goal: {}. ", g.floor_basis);
    match g.slo_latency_ms {
        Some(ms) => {
            let _ = write!(
                line,
                "Latency objective: p{} <= {}. ",
                g.slo_percentile,
                fmt_ms(ms)
            );
        }
        None => line += "No latency objective. ",
    }
    match g.hourly_usd {
        Some(h) => {
            let _ = write!(
                line,
                "Local models priced at {}/h, {:.0}% utilised. ",
                fmt_usd(h),
                g.utilisation * 100.0
            );
        }
        None => line += "No machine price: local costs unknown. ",
    }
    line += "Intervals: Wilson for accuracy, seeded percentile bootstrap (2,000 resamples) for macro-F1.\n\n";
    line
}

fn comparisons(s: &Summary) -> String {
    let mut md = String::new();
    if let Some(best) = &s.most_accurate {
        let _ = writeln!(
            md,
            "## Against the most accurate model ({})\n",
            escape(best)
        );
        md += "Paired on the same items: McNemar's exact test for accuracy, a paired bootstrap for macro-F1.\n\n";
        for c in &s.comparisons {
            let _ = writeln!(md, "- {}", escape(&c.text));
        }
        md.push('\n');
    }
    if !s.break_even.is_empty() {
        md += "## Break-even\n\n";
        for b in &s.break_even {
            let _ = writeln!(md, "- {}", b.text);
        }
        md.push('\n');
    }
    if let Some(c) = &s.cascade {
        let _ = writeln!(md, "## Cascade\n\n{}\n", c.text);
    }
    for m in s.models.iter().filter(|m| m.mistakes.is_some()) {
        if let Some(cost) = &m.mistakes {
            let _ = writeln!(
                md,
                "- Mistakes of {} cost {} per 1,000 queries (cost matrix).",
                m.name,
                fmt_usd(cost.usd_per_1000_queries)
            );
        }
    }
    md
}

fn errors(s: &Summary) -> String {
    let Some(e) = &s.errors else {
        return String::new();
    };
    let mut md = format!("## Errors of {}\n\n", escape(&e.model));
    for c in &e.top_confusions {
        let _ = writeln!(
            md,
            "- {} -> {}: {}",
            escape(&c.gold),
            escape(&c.predicted),
            c.count
        );
    }
    if let Some(p) = &e.pair {
        let _ = writeln!(
            md,
            "\n{} right where {} is wrong: {} items; the reverse: {} items.\n",
            escape(&p.a),
            escape(&p.b),
            p.a_only_right,
            p.b_only_right
        );
        for x in p.b_only_examples.iter().take(3) {
            let _ = writeln!(
                md,
                "- `{}` \"{}\": gold {}, {} said {}",
                escape(&x.id),
                escape(&shorten(&x.text, 100)),
                escape(&x.gold),
                escape(&p.a),
                escape(&x.a_predicted)
            );
        }
    }
    md.push('\n');
    md
}

fn environment(s: &Summary) -> String {
    let Some(env) = &s.environment else {
        return String::new();
    };
    let json = serde_json::to_string(env).unwrap_or_default();
    format!("## Environment\n\n`{}`\n", json.replace('`', "'"))
}

/// Keeps table cells intact: a `|` in a name would split the row.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}...")
}
