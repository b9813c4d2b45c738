//! The terminal exporter: [`render_eval`] turns an [`EvalResults`] into a plain-text summary
//! at most [`WIDTH`] columns wide (for up to about 20 labels), optionally with ANSI bold
//! headings. No table crate: every column is laid out here with `format!` widths.
//!
//! Widths count `char`s, so labels in scripts with double-width characters (CJK) or combining
//! marks may misalign; the numbers stay correct.

use crate::metrics::{min_queries_for_percentile, ClassificationMetrics, LatencySummary};

use super::results::{
    ApiReport, EvalResults, GenerationReport, LatencyReport, ProbabilitySource, PromptingInfo,
    ScoringReport,
};

/// Target width of the summary in columns.
pub const WIDTH: usize = 100;

/// Left margin of tables and notes under a heading.
const INDENT: &str = "  ";
/// Longest row label of an abbreviated confusion matrix before it is cut with `…`.
const ROW_LABEL_MAX: usize = 20;
/// Longest label in the per-class table before it is cut with `…`.
const CLASS_LABEL_MAX: usize = 48;
/// Shortest useful column tag in an abbreviated confusion matrix.
const MIN_TAG: usize = 3;
/// Width of the names in the key-value lines (`Accuracy`, `Load time`, ...).
const KEY_W: usize = 12;

/// Renders the summary `taskbench eval` prints. `color` adds ANSI bold to headings only.
pub fn render_eval(results: &EvalResults, color: bool) -> String {
    let st = Style { color };
    let mut sections = vec![header(results, st)];
    if let Some(p) = &results.prompting {
        sections.push(prompting(p));
    }
    if let (Some(m), true) = (&results.metrics, results.dataset.label_col.is_some()) {
        sections.extend([headline(m), per_class(m, st), confusion(m, st)]);
    } else if let Some(scoring) = &results.scoring {
        sections.push(scores(scoring));
    } else {
        sections.push(kv(
            "Quality",
            "not measured: the data set has no label column",
        ));
    }
    sections.push(latency(results.latency.as_ref(), st));
    if let Some(g) = &results.generation {
        sections.push(generation(g, st));
    }
    sections.push(resources(results));
    if let Some(api) = &results.api {
        let mut line = format!(
            "{} answered ({} from the cache), {} failed, {} requests sent to {}",
            api.answered, api.from_cache, api.failed, api.requests_sent, api.base_url
        );
        if api.not_sent_max_cost > 0 {
            line.push_str(&format!(
                "; {} not sent (--max-cost)",
                api.not_sent_max_cost
            ));
        }
        if api.not_sent_cancelled > 0 {
            line.push_str(&format!(
                "; {} not sent (interrupted)",
                api.not_sent_cancelled
            ));
        }
        line.push_str(&probability_source(api));
        sections.push(kv("API", &line));
    }
    if let Some(cost) = &results.cost {
        sections.push(kv("Cost", &cost.basis));
    }
    sections.join("\n")
}

/// `; label probabilities from ...` for a classification run, empty otherwise.
fn probability_source(api: &ApiReport) -> String {
    match api.probabilities {
        Some(ProbabilitySource::Logprobs) if api.logprobs_missing > 0 => format!(
            "; label probabilities from log-probabilities ({} {} without them: parsed text)",
            api.logprobs_missing,
            plural(api.logprobs_missing, "answer", "answers")
        ),
        Some(ProbabilitySource::Logprobs) => "; label probabilities from log-probabilities".into(),
        Some(ProbabilitySource::ParsedText) => "; label probabilities from the parsed text".into(),
        None => String::new(),
    }
}

/// Whether to emit ANSI escapes.
#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn heading(self, text: &str) -> String {
        if self.color {
            format!("\x1b[1m{text}\x1b[0m\n")
        } else {
            format!("{text}\n")
        }
    }
}

/// A `Name        value` line.
fn kv(key: &str, value: &str) -> String {
    format!("{key:<KEY_W$} {value}\n")
}

fn header(r: &EvalResults, st: Style) -> String {
    let d = &r.dataset;
    let title = format!(
        "{} on {}: {} {}",
        r.model.name,
        d.path,
        d.rows_evaluated,
        plural(d.rows_evaluated, "item", "items")
    );
    let mut out = st.heading(&title);
    for note in dataset_notes(r) {
        out.push_str(&format!("{INDENT}{note}\n"));
    }
    out
}

/// Facts about the rows that change how the numbers should be read.
fn dataset_notes(r: &EvalResults) -> Vec<String> {
    let d = &r.dataset;
    let mut notes = Vec::new();
    if d.rows_evaluated < d.rows_in_file {
        notes.push(format!(
            "{} of {} rows in the file, sampled with seed {}",
            d.rows_evaluated, d.rows_in_file, d.seed
        ));
    }
    if d.unknown_label_rows > 0 {
        notes.push(format!(
            "{} {} a gold label the model cannot predict; counted as errors",
            d.unknown_label_rows,
            plural(d.unknown_label_rows, "item has", "items have")
        ));
    }
    if d.truncated_items > 0 {
        notes.push(format!(
            "{} {} cut to the model's {}-token limit",
            d.truncated_items,
            plural(d.truncated_items, "text", "texts"),
            r.model.max_tokens
        ));
    }
    notes
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn prompting(p: &PromptingInfo) -> String {
    let mut how = p.task.clone();
    if let Some(method) = &p.method {
        how.push_str(&format!(" by {method}"));
    }
    if let Some(template) = &p.prompt_template {
        how.push_str(&format!(", prompt {template}"));
    }
    if p.shots > 0 {
        how.push_str(&format!(", {}-shot", p.shots));
    }
    how.push_str(if p.chat_template {
        ", chat template"
    } else {
        ", raw text (no chat template)"
    });
    let mut out = kv("Prompting", &how);
    if p.invalid_outputs > 0 {
        out.push_str(&kv(
            "Invalid",
            &format!(
                "{} answers matched no label (counted wrong)",
                p.invalid_outputs
            ),
        ));
    }
    if p.truncated_prompt_tokens > 0 {
        out.push_str(&kv(
            "Truncated",
            &format!(
                "{} prompt tokens dropped from the left to fit the context",
                p.truncated_prompt_tokens
            ),
        ));
    }
    out
}

fn scores(s: &ScoringReport) -> String {
    let pass = s.pass_rate.map_or("n/a".to_string(), |r| {
        format!("{r:.3}  ({} of {} passed)", s.passed, s.items)
    });
    let mean = s
        .mean_score
        .map_or("n/a".to_string(), |m| format!("{m:.3}"));
    let mut out = [
        kv("Scorer", &s.scorer),
        kv("Pass rate", &pass),
        kv("Mean score", &mean),
    ]
    .concat();
    if s.errors > 0 {
        out.push_str(&kv(
            "Score errors",
            &format!("{} items could not be scored", s.errors),
        ));
    }
    out
}

fn generation(g: &GenerationReport, st: Style) -> String {
    // A hosted API's prefill speed cannot be told apart from its queueing: not shown.
    let prefill = if g.prefill_tokens_per_s > 0.0 {
        format!(" at {:.0} tokens/s", g.prefill_tokens_per_s)
    } else {
        String::new()
    };
    let mut out = st.heading(&format!(
        "Generation: {} prompt tokens{prefill}, {} output tokens at {:.1} tokens/s",
        g.prompt_tokens, g.output_tokens, g.decode_tokens_per_s
    ));
    for (name, summary) in [("TTFT", &g.ttft), ("TPOT", &g.tpot), ("ITL", &g.itl)] {
        if let Some(s) = summary {
            out.push_str(&format!(
                "{INDENT}{name:<5} ms  p50 {:>8.2}  p90 {:>8.2}  p95 {:>8.2}  p99 {:>8.2}  (n = {})\n",
                s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.n
            ));
        }
    }
    out
}

fn headline(m: &ClassificationMetrics) -> String {
    let accuracy = format!("{:.3}  ({} of {} correct)", m.accuracy, m.correct, m.n);
    [
        kv("Accuracy", &accuracy),
        kv("Macro-F1", &format!("{:.3}", m.macro_f1)),
        kv("Weighted-F1", &format!("{:.3}", m.weighted_f1)),
    ]
    .concat()
}

fn per_class(m: &ClassificationMetrics, st: Style) -> String {
    let label_w = m
        .per_class
        .iter()
        .map(|c| chars(&c.label))
        .max()
        .unwrap_or(0)
        .clamp("label".len(), CLASS_LABEL_MAX);
    let mut out = st.heading("Per class");
    out.push_str(&format!(
        "{INDENT}{:<label_w$}  {:>9}  {:>6}  {:>5}  {:>7}\n",
        "label", "precision", "recall", "F1", "support"
    ));
    for c in &m.per_class {
        out.push_str(&format!(
            "{INDENT}{:<label_w$}  {:>9.3}  {:>6.3}  {:>5.3}  {:>7}\n",
            fit(&c.label, label_w),
            c.precision,
            c.recall,
            c.f1,
            c.support
        ));
    }
    out
}

/// How the confusion matrix is laid out: full labels as column headers when they fit in
/// [`WIDTH`], else short tags and a legend. Tags are label prefixes, or `1`, `2`, ... when
/// prefixes would collide; then each row label starts with its number too.
#[derive(Debug)]
struct MatrixLayout {
    row_w: usize,
    cell_w: usize,
    gap: usize,
    headers: Vec<String>,
    numbered: bool,
}

impl MatrixLayout {
    fn width(&self) -> usize {
        INDENT.len() + self.row_w + self.headers.len() * (self.gap + self.cell_w)
    }

    fn fits(self) -> Option<Self> {
        (self.width() <= WIDTH).then_some(self)
    }

    fn legend(&self, labels: &[String]) -> bool {
        self.headers.as_slice() != labels
    }
}

/// Full headers if they fit, else prefix tags as wide as fit, else numbers; `None` if even
/// numbers overflow [`WIDTH`].
fn matrix_layout(labels: &[String], max_count: usize) -> Option<MatrixLayout> {
    let num_w = digits(max_count);
    let longest = labels.iter().map(|l| chars(l)).max().unwrap_or(0);
    let full = MatrixLayout {
        row_w: longest,
        cell_w: longest.max(num_w),
        gap: 2,
        headers: labels.to_vec(),
        numbered: false,
    };
    full.fits()
        .or_else(|| prefix_layout(labels, longest, num_w))
        .or_else(|| numbered_layout(labels, longest, num_w))
}

/// Column headers cut to the widest prefix that fits, if those prefixes are distinct.
fn prefix_layout(labels: &[String], longest: usize, num_w: usize) -> Option<MatrixLayout> {
    let row_w = longest.min(ROW_LABEL_MAX);
    let per_column = WIDTH.saturating_sub(INDENT.len() + row_w) / labels.len().max(1);
    let tag_w = per_column.saturating_sub(1).min(longest);
    let headers: Vec<String> = labels
        .iter()
        .map(|l| l.chars().take(tag_w).collect())
        .collect();
    if tag_w < MIN_TAG || !all_distinct(&headers) {
        return None;
    }
    let layout = MatrixLayout {
        row_w,
        cell_w: tag_w.max(num_w),
        gap: 1,
        headers,
        numbered: false,
    };
    layout.fits()
}

/// Columns `1..=k`, rows `1 label`.
fn numbered_layout(labels: &[String], longest: usize, num_w: usize) -> Option<MatrixLayout> {
    let tag_w = digits(labels.len());
    let layout = MatrixLayout {
        row_w: (longest + tag_w + 1).min(ROW_LABEL_MAX + tag_w + 1),
        cell_w: tag_w.max(num_w),
        gap: 1,
        headers: (1..=labels.len()).map(|i| i.to_string()).collect(),
        numbered: true,
    };
    layout.fits()
}

fn all_distinct(items: &[String]) -> bool {
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort();
    sorted.windows(2).all(|w| w[0] != w[1])
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}

fn confusion(m: &ClassificationMetrics, st: Style) -> String {
    let mut out = st.heading("Confusion matrix (rows: gold, columns: predicted)");
    let max_count = m.confusion.iter().flatten().copied().max().unwrap_or(0);
    if m.labels.is_empty() {
        out.push_str(&format!("{INDENT}(no labels)\n"));
        return out;
    }
    let Some(layout) = matrix_layout(&m.labels, max_count) else {
        out.push_str(&format!(
            "{INDENT}({} labels do not fit in {WIDTH} columns; see confusion in results.json)\n",
            m.labels.len()
        ));
        return out;
    };
    out.push_str(&matrix_rows(m, &layout));
    if layout.legend(&m.labels) {
        out.push_str(&legend(&m.labels, &layout.headers));
    }
    out
}

fn matrix_rows(m: &ClassificationMetrics, layout: &MatrixLayout) -> String {
    let (row_w, cell_w, gap) = (layout.row_w, layout.cell_w, " ".repeat(layout.gap));
    let mut out = format!("{INDENT}{:row_w$}", "");
    for h in &layout.headers {
        out.push_str(&format!("{gap}{h:>cell_w$}"));
    }
    out.push('\n');
    let tag_w = digits(m.labels.len());
    for (i, label) in m.labels.iter().enumerate() {
        let name = if layout.numbered {
            format!(
                "{:>tag_w$} {}",
                i + 1,
                fit(label, row_w.saturating_sub(tag_w + 1))
            )
        } else {
            fit(label, row_w)
        };
        out.push_str(&format!("{INDENT}{name:<row_w$}"));
        let row = m.confusion.get(i);
        for j in 0..m.labels.len() {
            let count = row.and_then(|r| r.get(j)).copied().unwrap_or(0);
            out.push_str(&format!("{gap}{count:>cell_w$}"));
        }
        out.push('\n');
    }
    out
}

/// `tag = label` pairs for the tags that differ from their label, comma-separated and
/// wrapped to [`WIDTH`] under the first entry.
fn legend(labels: &[String], headers: &[String]) -> String {
    let lead = format!("{INDENT}columns:");
    let pad = " ".repeat(chars(&lead));
    let entries: Vec<String> = headers
        .iter()
        .zip(labels)
        .filter(|(h, l)| h != l)
        .map(|(h, l)| format!("{h} = {l}"))
        .collect();
    let mut out = String::new();
    let mut line = lead;
    for (i, entry) in entries.iter().enumerate() {
        let comma = if i + 1 < entries.len() { "," } else { "" };
        let piece = format!(" {entry}{comma}");
        let has_entry = chars(&line) > chars(&pad);
        if has_entry && chars(&line) + chars(&piece) > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = pad.clone();
        }
        line.push_str(&piece);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Percentile columns: name, value, whether it rests on enough samples.
fn percentile_columns(lat: &LatencyReport) -> [(&'static str, f64, bool); 5] {
    let (s, ok) = (&lat.summary, &lat.reliable);
    [
        ("p50", s.p50_ms, ok.p50),
        ("p90", s.p90_ms, ok.p90),
        ("p95", s.p95_ms, ok.p95),
        ("p99", s.p99_ms, ok.p99),
        ("max", s.max_ms, true),
    ]
}

fn latency(lat: Option<&LatencyReport>, st: Style) -> String {
    let Some(lat) = lat else {
        return kv(
            "Latency",
            "not measured (no fresh timings: the single-stream pass was skipped, or every answer came from the cache)",
        );
    };
    let s = &lat.summary;
    let mut out = st.heading(&format!(
        "Latency, {} ({}): {} timed, {} warm-up",
        lat.scenario, lat.includes, s.n, lat.warmup_items
    ));
    let columns = percentile_columns(lat);
    let mut names = format!("{INDENT}  ");
    let mut values = format!("{INDENT}ms");
    for (name, value, reliable) in columns {
        let name = if reliable {
            name.to_string()
        } else {
            format!("{name}*")
        };
        names.push_str(&format!("  {name:>9}"));
        values.push_str(&format!("  {value:>9.2}"));
    }
    out.push_str(&format!("{names}\n{values}\n"));
    if let Some(note) = unreliable_note(s, &columns) {
        out.push_str(&format!("{INDENT}{note}\n"));
    }
    out
}

/// The footnote for `*`: how many queries MLPerf LoadGen needs for each flagged percentile.
fn unreliable_note(s: &LatencySummary, columns: &[(&str, f64, bool)]) -> Option<String> {
    let needs: Vec<String> = [("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99)]
        .into_iter()
        .filter(|(name, _)| columns.iter().any(|(n, _, ok)| n == name && !ok))
        .enumerate()
        .map(|(i, (name, p))| {
            let unit = if i == 0 { " queries" } else { "" };
            format!(">= {}{unit} for {name}", min_queries_for_percentile(p))
        })
        .collect();
    (!needs.is_empty()).then(|| {
        format!(
            "* n = {} is too few: MLPerf LoadGen needs {}",
            s.n,
            needs.join(", ")
        )
    })
}

fn resources(r: &EvalResults) -> String {
    let t = &r.throughput;
    let throughput = format!(
        "{:.1} items/s, {:.0} tokens/s (offline: {} items in {:.2} s)",
        t.items_per_s, t.tokens_per_s, t.items, t.seconds
    );
    let memory = r.peak_rss_bytes.map_or_else(
        || "not measured on this OS".to_string(),
        |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    );
    let s = &r.settings;
    let device = format!(
        "{}, {} {}",
        s.device,
        s.threads,
        plural(s.threads, "thread", "threads")
    );
    [
        kv("Throughput", &throughput),
        kv("Load time", &format!("{:.2} s", r.load_time_s)),
        kv("Peak memory", &memory),
        kv("Device", &device),
    ]
    .concat()
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `width` chars by replacing its middle with `…`, keeping a third of the room for
/// the start and the rest for the end, since labels that share a prefix differ at the end
/// (`very_l…x_00_category` / `very_l…x_01_category`).
fn fit(s: &str, width: usize) -> String {
    let n = chars(s);
    if n <= width {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let head = keep / 3;
    let tail = keep - head;
    let mut cut: String = s.chars().take(head).collect();
    cut.push('…');
    cut.extend(s.chars().skip(n - tail));
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{classification_metrics, latency_summary};
    use crate::report::results::tests::sample_results;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn has_line(text: &str, want: &str) -> bool {
        text.lines().any(|l| l.trim_end() == want)
    }

    #[test]
    fn renders_the_sample_report() {
        let text = render_eval(&sample_results(), false);
        println!("{text}");
        let want = [
            "models/minilm-sentiment on datasets/reviews/test.csv: 10 items",
            "  10 of 5000 rows in the file, sampled with seed 42",
            "  1 text cut to the model's 512-token limit",
            "Accuracy     0.700  (7 of 10 correct)",
            "Macro-F1     0.656",
            "Weighted-F1  0.700",
            "Per class",
            "  label     precision  recall     F1  support",
            "  negative      0.667   0.667  0.667        3",
            "  neutral       0.500   0.500  0.500        2",
            "  positive      0.800   0.800  0.800        5",
            "Confusion matrix (rows: gold, columns: predicted)",
            "            negative   neutral  positive",
            "  negative         2         1         0",
            "  neutral          0         1         1",
            "  positive         1         0         4",
            "Latency, single-stream (tokenization + forward + softmax): 100 timed, 8 warm-up",
            "            p50        p90       p95*       p99*        max",
            "  ms       4.55       6.55       6.80       7.00       7.00",
            "  * n = 100 is too few: MLPerf LoadGen needs >= 130 queries for p95, >= 662 for p99",
            "Throughput   40.0 items/s, 1648 tokens/s (offline: 10 items in 0.25 s)",
            "Load time    0.84 s",
            "Peak memory  512.3 MiB",
            "Device       cpu, 16 threads",
        ];
        for line in want {
            assert!(has_line(&text, line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains('\x1b'), "no color unless asked");
        assert!(lines(&text).iter().all(|l| chars(l) <= WIDTH), "{text}");
    }

    #[test]
    fn color_only_bolds_headings() {
        let text = render_eval(&sample_results(), true);
        assert!(text.contains("\x1b[1mPer class\x1b[0m"));
        assert!(has_line(&text, "Accuracy     0.700  (7 of 10 correct)"));
    }

    #[test]
    fn reliable_percentiles_have_no_marker_or_footnote() {
        let mut r = sample_results();
        let samples: Vec<f64> = (0..1000).map(f64::from).collect();
        r.latency = Some(LatencyReport::single_stream(
            latency_summary(&samples).unwrap(),
            0,
        ));
        let text = render_eval(&r, false);
        assert!(!text.contains('*'), "{text}");
    }

    #[test]
    fn missing_latency_memory_and_labels_are_said_plainly() {
        let mut r = sample_results();
        r.latency = None;
        r.peak_rss_bytes = None;
        r.dataset.label_col = None;
        let text = render_eval(&r, false);
        assert!(has_line(
            &text,
            "Latency      not measured (no fresh timings: the single-stream pass was skipped, or every answer came from the cache)"
        ));
        assert!(has_line(&text, "Peak memory  not measured on this OS"));
        assert!(has_line(
            &text,
            "Quality      not measured: the data set has no label column"
        ));
        assert!(!text.contains("Per class"));
    }

    fn many_labels(k: usize, prefix: &str) -> ClassificationMetrics {
        let labels: Vec<String> = (0..k).map(|i| format!("{prefix}{i:02}_category")).collect();
        let gold: Vec<Option<usize>> = (0..k * 50).map(|i| Some(i % k)).collect();
        let pred: Vec<usize> = (0..k * 50).map(|i| (i * 7 / 3) % k).collect();
        classification_metrics(&gold, &pred, &labels).unwrap()
    }

    #[test]
    fn ten_long_labels_fit_in_100_columns_with_a_legend() {
        let mut r = sample_results();
        r.metrics = Some(many_labels(10, ""));
        let text = render_eval(&r, false);
        println!("{text}");
        assert!(lines(&text).iter().all(|l| chars(l) <= WIDTH), "{text}");
        assert!(
            text.contains("  columns: 00_cate = 00_category, 01_cate = 01_category,"),
            "{text}"
        );
        let header = lines(&text)
            .into_iter()
            .skip_while(|l| !l.starts_with("Confusion"))
            .nth(1)
            .unwrap();
        assert_eq!(header.split_whitespace().count(), 10, "{header}");
    }

    #[test]
    fn colliding_prefixes_become_numbers() {
        let mut r = sample_results();
        r.metrics = Some(many_labels(16, "very_long_shared_prefix_"));
        let text = render_eval(&r, false);
        println!("{text}");
        assert!(lines(&text).iter().all(|l| chars(l) <= WIDTH), "{text}");
        assert!(
            text.contains("1 = very_long_shared_prefix_00_category,"),
            "{text}"
        );
        assert!(text.contains("\n   1 very_l…x_00_category 17 "), "{text}");
        assert!(text.contains("\n  16 very_l…x_15_category  0 "), "{text}");
    }

    #[test]
    fn too_many_labels_point_to_results_json() {
        let mut r = sample_results();
        r.metrics = Some(many_labels(40, ""));
        let text = render_eval(&r, false);
        assert!(
            text.contains("40 labels do not fit in 100 columns"),
            "{text}"
        );
        assert!(lines(&text).iter().all(|l| chars(l) <= WIDTH), "{text}");
    }

    #[test]
    fn ragged_confusion_matrix_does_not_panic() {
        let mut r = sample_results();
        r.metrics.as_mut().unwrap().confusion = vec![vec![1]];
        let text = render_eval(&r, false);
        assert!(
            has_line(&text, "  neutral          0         0         0"),
            "{text}"
        );
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("negative", 8), "negative");
        assert_eq!(fit("negative", 5), "n…ive");
        assert_eq!(fit("négatif", 4), "n…if");
        assert_eq!(fit("négatif", 7), "négatif");
        assert_eq!(fit("x", 0), "…");
    }
}
