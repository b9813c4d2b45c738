//! Self-contained SVG charts for the taskbench HTML report.
//!
//! Every function takes plain data and returns one complete `<svg>` element as
//! a `String`, ready to be pasted into HTML: no scripts, no external fonts or
//! stylesheets, `viewBox` + `width="100%"` so it scales with the page, and a
//! `<title>` for screen readers. Output is deterministic (same input, same
//! bytes), every user string is XML-escaped, and non-finite inputs are dropped
//! (with a footnote) rather than emitted as coordinates.
//!
//! Drawing uses `plotters` with only its SVG backend and no font feature: the
//! SVG backend emits `<text>` elements and lets the browser lay out glyphs, so
//! plotters' built-in width estimate is all the layout needs. No font files, no
//! fontconfig/freetype.

mod cascade;
mod common;
mod heatmap;
mod latency;
mod scatter;
#[cfg(test)]
mod tests;

pub use cascade::cascade;
pub use heatmap::{confusion_heatmap, MAX_HEATMAP_LABELS};
pub use latency::latency_distribution;
pub use scatter::scatter;

/// One model on the cost/quality scatter.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPoint {
    pub label: String,
    pub x: f64,
    pub y: f64,
    /// Draw a ring around the point and print its label in bold.
    pub highlight: bool,
}

/// A scatter plot of models, e.g. x = $ per 1,000 queries, y = accuracy.
#[derive(Debug, Clone, Copy)]
pub struct ScatterChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub points: &'a [ScatterPoint],
    /// Logarithmic x axis (decade ticks); points with x <= 0 are dropped.
    pub log_x: bool,
    /// Mark the Pareto frontier (lower x and higher y are better): a step line
    /// through the non-dominated points, which are drawn as diamonds.
    pub pareto_frontier: bool,
    /// Vertical reference line and its label, e.g. `(800.0, "SLO p95 ≤ 800 ms")`.
    pub x_line: Option<(f64, &'a str)>,
    /// Horizontal reference line and its label, e.g. an accuracy floor.
    pub y_line: Option<(f64, &'a str)>,
}

/// Latency samples of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySeries {
    pub label: String,
    pub samples_ms: Vec<f64>,
}

/// A threshold sweep of a local→hosted cascade. The four slices are read in
/// parallel (extra entries of longer slices are ignored).
#[derive(Debug, Clone, Copy)]
pub struct CascadeChart<'a> {
    pub title: &'a str,
    /// Confidence threshold t: answer locally when local confidence ≥ t.
    pub thresholds: &'a [f64],
    /// Accuracy of the cascade at each t (0–1).
    pub accuracy: &'a [f64],
    /// Share of queries answered by the local model at each t (0–1).
    pub share_local: &'a [f64],
    /// Cost in USD per 1,000 queries at each t.
    pub usd_per_1000: &'a [f64],
    /// Accuracy floor, drawn as a horizontal line.
    pub floor: Option<f64>,
    /// The chosen threshold, drawn as a vertical marker.
    pub chosen: Option<f64>,
}

/// Indices of the Pareto-optimal points when lower `x` and higher `y` are
/// better, sorted by `x` (then by index). A point is dominated if another point
/// is at least as good on both axes and strictly better on one; exact
/// duplicates of an optimal point are therefore all kept. Points with a
/// non-finite coordinate are never on the front.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    // x ascending, then y descending, then index: the first point seen at each
    // x is the best one there.
    order.sort_by(|&a, &b| {
        let (pa, pb) = (points[a], points[b]);
        pa.0.total_cmp(&pb.0)
            .then(pb.1.total_cmp(&pa.1))
            .then(a.cmp(&b))
    });
    let mut front = Vec::new();
    let mut best: Option<(f64, f64)> = None;
    for i in order {
        let (x, y) = points[i];
        match best {
            Some((bx, by)) if y < by || (y == by && x != bx) => {} // dominated
            Some((bx, by)) if y == by && x == bx => front.push(i), // duplicate
            _ => {
                best = Some((x, y));
                front.push(i);
            }
        }
    }
    front
}
