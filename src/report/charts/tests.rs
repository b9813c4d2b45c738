use super::common::{fmt_count, fmt_num, fmt_thousands, percentile, Axis};
use super::*;

const NASTY: &str = "a<b & \"c\" 'd'";

fn parse(svg: &str) -> roxmltree::Document<'_> {
    match roxmltree::Document::parse(svg) {
        Ok(doc) => doc,
        Err(e) => panic!("not well-formed XML: {e}\n{svg}"),
    }
}

/// Checks shared by every chart; returns the trimmed text of all <text> nodes.
fn check_svg(svg: &str, title: &str) -> Vec<String> {
    let doc = parse(svg);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert!(
        root.attribute("viewBox")
            .is_some_and(|v| v.starts_with("0 0 ")),
        "viewBox"
    );
    assert_eq!(root.attribute("width"), Some("100%"));
    assert_eq!(
        root.attribute("height"),
        None,
        "height must follow the aspect ratio"
    );
    assert_eq!(root.attribute("role"), Some("img"));
    let first = root.first_element_child().expect("children");
    assert_eq!(
        first.tag_name().name(),
        "title",
        "<title> must be the first child"
    );
    assert_eq!(first.text(), Some(title));
    for node in doc.descendants().filter(|n| n.has_tag_name("text")) {
        assert_eq!(node.attribute("font-family"), Some("sans-serif"));
    }
    assert!(
        !svg.contains("NaN") && !svg.contains("inf"),
        "non-finite number in output"
    );
    assert!(!svg.contains("<script"), "no scripts");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn texts_contain(texts: &[String], needle: &str) -> bool {
    texts.iter().any(|t| t.contains(needle))
}

fn point(label: &str, x: f64, y: f64) -> ScatterPoint {
    ScatterPoint {
        label: label.to_string(),
        x,
        y,
        highlight: false,
    }
}

fn demo_points() -> Vec<ScatterPoint> {
    vec![
        ScatterPoint {
            highlight: true,
            ..point("minilm-finetuned", 0.004, 0.925)
        },
        point("minilm-head", 0.004, 0.896),
        point("smollm2-135m (zero-shot)", 0.05, 0.167),
        point("gpt-4o-mini", 0.12, 0.93),
        point(NASTY, 1.5, 0.5),
    ]
}

fn demo_scatter(points: &[ScatterPoint]) -> String {
    scatter(&ScatterChart {
        title: "Accuracy vs cost",
        x_label: "USD per 1,000 queries",
        y_label: "accuracy",
        points,
        log_x: true,
        pareto_frontier: true,
        x_line: Some((0.1, "budget <= $0.10")),
        y_line: Some((0.9, "floor & \"target\"")),
    })
}

fn demo_latency() -> Vec<LatencySeries> {
    vec![
        LatencySeries {
            label: "minilm".into(),
            samples_ms: (1..=200).map(|i| 8.0 + i as f64 * 0.03).collect(),
        },
        LatencySeries {
            label: NASTY.into(),
            samples_ms: (1..=50).map(|i| 300.0 + i as f64 * 12.0).collect(),
        },
        LatencySeries {
            label: "empty".into(),
            samples_ms: vec![],
        },
    ]
}

fn demo_cascade(t: &[f64], acc: &[f64], share: &[f64], usd: &[f64]) -> String {
    cascade(&CascadeChart {
        title: "Cascade <sweep>",
        thresholds: t,
        accuracy: acc,
        share_local: share,
        usd_per_1000: usd,
        floor: Some(0.92),
        chosen: Some(0.5),
    })
}

fn sweep() -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let t: Vec<f64> = (0..=20).map(|i| i as f64 / 20.0).collect();
    let share: Vec<f64> = t.iter().map(|t| 1.0 - t * t).collect();
    let acc: Vec<f64> = t.iter().map(|t| 0.9 + 0.03 * t).collect();
    let usd: Vec<f64> = share.iter().map(|s| 0.004 + (1.0 - s) * 0.12).collect();
    (t, acc, share, usd)
}

// ---------------------------------------------------------------- pareto

#[test]
fn pareto_simple_and_sorted_by_x() {
    // (cost, accuracy)
    let pts = [
        (0.12, 0.93),
        (0.004, 0.925),
        (0.05, 0.167),
        (0.004, 0.896),
        (0.06, 0.17),
    ];
    assert_eq!(pareto_front(&pts), vec![1, 0]);
}

#[test]
fn pareto_single_and_empty() {
    assert_eq!(pareto_front(&[(1.0, 1.0)]), vec![0]);
    assert_eq!(pareto_front(&[]), Vec::<usize>::new());
}

#[test]
fn pareto_all_dominated_but_one() {
    let pts = [(2.0, 0.5), (3.0, 0.4), (1.0, 0.9), (1.5, 0.9), (1.0, 0.1)];
    assert_eq!(pareto_front(&pts), vec![2]);
}

#[test]
fn pareto_ties() {
    // Same x: only the higher y survives. Same y: only the lower x survives.
    assert_eq!(pareto_front(&[(1.0, 0.5), (1.0, 0.7)]), vec![1]);
    assert_eq!(pareto_front(&[(2.0, 0.7), (1.0, 0.7)]), vec![1]);
    // A staircase keeps every step.
    assert_eq!(
        pareto_front(&[(3.0, 0.9), (1.0, 0.5), (2.0, 0.8)]),
        vec![1, 2, 0]
    );
}

#[test]
fn pareto_duplicates_are_all_kept() {
    let pts = [(1.0, 0.8), (0.5, 0.6), (1.0, 0.8), (2.0, 0.7)];
    assert_eq!(pareto_front(&pts), vec![1, 0, 2]);
}

#[test]
fn pareto_ignores_non_finite() {
    let pts = [
        (f64::NAN, 1.0),
        (1.0, f64::INFINITY),
        (2.0, 0.5),
        (f64::NEG_INFINITY, 0.9),
    ];
    assert_eq!(pareto_front(&pts), vec![2]);
}

// ---------------------------------------------------------------- axes & formatting

#[test]
fn log_axis_ticks_at_decades() {
    let axis = Axis::log(1e-3, 1e1);
    assert_eq!(axis.tick_values(), vec!["0.001", "0.01", "0.1", "1", "10"]);
    assert!(axis.lo <= -3.0 && axis.hi >= 1.0);
    // Short ranges also label 2× and 5×.
    let short = Axis::log(13.0, 900.0);
    assert_eq!(
        short.tick_values(),
        vec!["10", "20", "50", "100", "200", "500", "1000"]
    );
}

#[test]
fn log_axis_on_scatter_prints_decades() {
    let pts: Vec<ScatterPoint> = [1e-3, 1e-2, 1e-1, 1.0, 1e1]
        .iter()
        .map(|&x| point("m", x, 0.5))
        .collect();
    let svg = scatter(&ScatterChart {
        title: "log",
        x_label: "cost",
        y_label: "acc",
        points: &pts,
        log_x: true,
        pareto_frontier: false,
        x_line: None,
        y_line: None,
    });
    let texts = check_svg(&svg, "log");
    for tick in ["0.001", "0.01", "0.1", "1", "10"] {
        assert!(
            texts.iter().any(|t| t == tick),
            "missing decade tick {tick}: {texts:?}"
        );
    }
}

#[test]
fn linear_ticks_are_nice() {
    let a = Axis::linear(0.0, 1.0, 5);
    assert_eq!(a.tick_values(), vec!["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    let b = Axis::linear(0.13, 0.97, 6);
    assert_eq!((b.lo, b.hi), (0.0, 1.0));
    let c = Axis::linear(5.0, 5.0, 4); // degenerate range still works
    assert!(c.lo < 5.0 && c.hi > 5.0 && c.major.len() >= 2);
}

#[test]
fn number_formatting() {
    assert_eq!(fmt_num(0.30000000000000004), "0.3");
    assert_eq!(fmt_num(0.004), "0.004");
    assert_eq!(fmt_num(1000.0), "1000");
    assert_eq!(fmt_num(-0.0), "0");
    assert_eq!(fmt_num(f64::NAN), "–");
    assert_eq!(fmt_count(999), "999");
    assert_eq!(fmt_count(1234), "1.2k");
    assert_eq!(fmt_count(45_000), "45k");
    assert_eq!(fmt_thousands(1_234_567), "1,234,567");
    assert_eq!(fmt_thousands(999), "999");
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 50.0), 3.0);
    assert_eq!(percentile(&[10.0, 20.0], 25.0), 12.5);
}

// ---------------------------------------------------------------- charts

#[test]
fn scatter_is_well_formed_and_escapes_labels() {
    let svg = demo_scatter(&demo_points());
    let texts = check_svg(&svg, "Accuracy vs cost");
    assert!(
        texts.iter().any(|t| t == NASTY),
        "escaped label must round-trip: {texts:?}"
    );
    assert!(texts_contain(&texts, "floor & \"target\""));
    assert!(texts_contain(&texts, "budget <= $0.10"));
    assert!(texts_contain(&texts, "minilm-finetuned"));
    assert!(texts_contain(&texts, "USD per 1,000 queries"));
    assert!(
        svg.contains("a&lt;b &amp; &quot;c&quot;"),
        "raw output must be escaped"
    );
}

#[test]
fn scatter_title_is_escaped() {
    let pts = demo_points();
    let svg = scatter(&ScatterChart {
        title: NASTY,
        ..demo_chart_defaults(&pts)
    });
    check_svg(&svg, NASTY);
}

fn demo_chart_defaults(points: &[ScatterPoint]) -> ScatterChart<'_> {
    ScatterChart {
        title: "t",
        x_label: "x",
        y_label: "y",
        points,
        log_x: false,
        pareto_frontier: true,
        x_line: None,
        y_line: None,
    }
}

#[test]
fn scatter_drops_non_finite_points_with_a_note() {
    let mut pts = demo_points();
    pts.push(point("bad-x", f64::NAN, 0.5));
    pts.push(point("bad-y", 0.1, f64::INFINITY));
    pts.push(point("zero cost", 0.0, 0.5)); // not plottable on a log axis
    let svg = scatter(&ScatterChart {
        x_line: Some((f64::NAN, "bad line")),
        y_line: Some((f64::INFINITY, "bad line")),
        ..demo_chart_defaults(&pts)
    });
    check_svg(&svg, "t"); // linear axis: zero cost is fine, 2 dropped
    let svg = demo_scatter(&pts);
    let texts = check_svg(&svg, "Accuracy vs cost");
    assert!(texts_contain(&texts, "3 points not shown"), "{texts:?}");
}

#[test]
fn scatter_empty_and_all_invalid() {
    let svg = demo_scatter(&[]);
    let texts = check_svg(&svg, "Accuracy vs cost");
    assert!(texts_contain(&texts, "no data"));
    let bad = [point("x", f64::NAN, f64::NAN)];
    let texts = check_svg(&demo_scatter(&bad), "Accuracy vs cost");
    assert!(texts_contain(&texts, "no data"));
}

#[test]
fn scatter_single_point_and_identical_points() {
    let one = [point("only", 0.5, 0.5)];
    check_svg(&scatter(&demo_chart_defaults(&one)), "t");
    let same = [point("a", 1.0, 1.0), point("b", 1.0, 1.0)];
    check_svg(&scatter(&demo_chart_defaults(&same)), "t");
    check_svg(&demo_scatter(&same), "Accuracy vs cost");
}

#[test]
fn latency_chart() {
    let svg = latency_distribution("Latency & \"tails\"", &demo_latency(), Some(800.0));
    let texts = check_svg(&svg, "Latency & \"tails\"");
    assert!(texts.iter().any(|t| t == NASTY));
    assert!(texts_contain(&texts, "no latency samples"));
    assert!(texts_contain(&texts, "SLO 800 ms"));
    assert!(texts_contain(&texts, "p95"));
}

#[test]
fn latency_non_finite_and_empty() {
    let series = vec![LatencySeries {
        label: "m".into(),
        samples_ms: vec![f64::NAN, 10.0, f64::INFINITY, 12.0, -1.0, 0.0, 11.0],
    }];
    let texts = check_svg(&latency_distribution("L", &series, Some(f64::NAN)), "L");
    assert!(texts_contain(&texts, "3 samples dropped"), "{texts:?}");
    let texts = check_svg(&latency_distribution("L", &[], None), "L");
    assert!(texts_contain(&texts, "no data"));
    let only_empty = vec![LatencySeries {
        label: "m".into(),
        samples_ms: vec![],
    }];
    let texts = check_svg(&latency_distribution("L", &only_empty, Some(800.0)), "L");
    assert!(texts_contain(&texts, "no latency samples"));
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("label_{i:02}")).collect()
}

fn diagonal_counts(n: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if i == j { 10 + i * 3 } else { 1 })
                .collect()
        })
        .collect()
}

#[test]
fn heatmap_small() {
    let mut names = labels(4);
    names[1] = NASTY.to_string();
    let svg = confusion_heatmap("Confusion", &names, &diagonal_counts(4));
    let texts = check_svg(&svg, "Confusion");
    assert!(
        texts.iter().filter(|t| *t == NASTY).count() == 2,
        "row and column label"
    );
    assert!(texts.iter().any(|t| t == "13"), "diagonal count printed");
    assert!(texts_contain(&texts, "predicted label") && texts_contain(&texts, "gold label"));
    assert!(!texts_contain(&texts, "most frequent"));
}

#[test]
fn heatmap_truncates_above_30_labels() {
    let names = labels(40);
    let svg = confusion_heatmap("Confusion", &names, &diagonal_counts(40));
    let texts = check_svg(&svg, "Confusion");
    assert!(
        texts_contain(&texts, "Showing the 30 most frequent of 40 gold labels"),
        "{texts:?}"
    );
    // The 10 least frequent rows (label_00..label_09) are hidden.
    assert!(!texts.iter().any(|t| t == "label_00"));
    assert!(texts.iter().any(|t| t == "label_39"));
    // 30 labels: readable without truncation.
    let texts = check_svg(
        &confusion_heatmap("C", &labels(30), &diagonal_counts(30)),
        "C",
    );
    assert!(texts.iter().any(|t| t == "label_00"));
    assert!(!texts_contain(&texts, "most frequent"));
}

#[test]
fn heatmap_ragged_and_empty() {
    let names = labels(3);
    let ragged = vec![vec![5, 1], vec![]];
    check_svg(&confusion_heatmap("C", &names, &ragged), "C");
    let texts = check_svg(&confusion_heatmap("C", &names, &[]), "C");
    assert!(texts_contain(&texts, "No examples were counted"));
    let texts = check_svg(&confusion_heatmap("C", &[], &[]), "C");
    assert!(texts_contain(&texts, "no data"));
}

#[test]
fn cascade_chart() {
    let (t, acc, share, usd) = sweep();
    let svg = demo_cascade(&t, &acc, &share, &usd);
    let texts = check_svg(&svg, "Cascade <sweep>");
    assert!(texts_contain(&texts, "chosen t = 0.5"));
    assert!(texts_contain(&texts, "accuracy floor 0.92"));
    assert!(texts_contain(&texts, "At t = 0.5"));
    assert!(texts.iter().any(|t| t == "100%"), "share axis in percent");
}

#[test]
fn cascade_non_finite_mismatched_and_empty() {
    let (t, mut acc, share, mut usd) = sweep();
    acc[3] = f64::NAN;
    usd[7] = f64::INFINITY;
    let svg = demo_cascade(&t, &acc, &share[..15], &usd);
    let texts = check_svg(&svg, "Cascade <sweep>");
    assert!(
        texts_contain(&texts, "2 non-finite values skipped"),
        "{texts:?}"
    );
    let texts = check_svg(&demo_cascade(&[], &[], &[], &[]), "Cascade <sweep>");
    assert!(texts_contain(&texts, "no data"));
    let nan = [f64::NAN; 3];
    let texts = check_svg(&demo_cascade(&nan, &nan, &nan, &nan), "Cascade <sweep>");
    assert!(texts_contain(&texts, "no data"));
    let all_nan_values = demo_cascade(&[0.1, 0.2, 0.3], &nan, &nan, &nan);
    check_svg(&all_nan_values, "Cascade <sweep>");
}

#[test]
fn outputs_are_deterministic() {
    let pts = demo_points();
    assert_eq!(demo_scatter(&pts), demo_scatter(&pts));
    let s = demo_latency();
    assert_eq!(
        latency_distribution("L", &s, Some(800.0)),
        latency_distribution("L", &s, Some(800.0))
    );
    let (n, c) = (labels(40), diagonal_counts(40));
    assert_eq!(
        confusion_heatmap("C", &n, &c),
        confusion_heatmap("C", &n, &c)
    );
    let (t, acc, share, usd) = sweep();
    assert_eq!(
        demo_cascade(&t, &acc, &share, &usd),
        demo_cascade(&t, &acc, &share, &usd)
    );
}

#[test]
fn control_characters_do_not_break_xml() {
    let pts = [point("tab\tand\u{1}bell", 1.0, 0.5)];
    let svg = scatter(&ScatterChart {
        title: "ctl\u{7}",
        ..demo_chart_defaults(&pts)
    });
    check_svg(&svg, "ctl ");
}
