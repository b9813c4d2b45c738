//! Horizontal box plots of latency per model on a log ms axis.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::common::*;
use super::LatencySeries;

const W: u32 = 720;
const ROW_H: u32 = 38;
const TOP: u32 = 68;
const X_LABELS: u32 = 44;
const RIGHT: u32 = 132;
const MAX_LABEL_CHARS: usize = 30;

/// Percentiles of one series (None when it has no usable samples).
struct Stats {
    n: usize,
    p: [f64; 6], // p5 p25 p50 p75 p95 p99
}

fn stats(samples: &[f64]) -> (Option<Stats>, usize) {
    let mut v: Vec<f64> = samples
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .collect();
    let dropped = samples.len() - v.len();
    if v.is_empty() {
        return (None, dropped);
    }
    v.sort_by(f64::total_cmp);
    let p = [5.0, 25.0, 50.0, 75.0, 95.0, 99.0].map(|q| percentile(&v, q));
    (Some(Stats { n: v.len(), p }), dropped)
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{}", v.round() as i64)
    } else {
        fmt_num((v * 10.0).round() / 10.0)
    }
}

/// One row per series: whiskers p5–p95, box p25–p75, median bar and a p99
/// marker on a log-scaled ms axis; the SLO (if any) as a dashed vertical line.
/// Rows whose p95 exceeds the SLO are drawn in vermillion.
pub fn latency_distribution(title: &str, series: &[LatencySeries], slo_ms: Option<f64>) -> String {
    if series.is_empty() {
        return message_chart(title, "no data", W, 240);
    }
    let slo = slo_ms.filter(|v| v.is_finite() && *v > 0.0);
    let rows: Vec<(Option<Stats>, usize)> = series.iter().map(|s| stats(&s.samples_ms)).collect();
    let dropped: usize = rows.iter().map(|r| r.1).sum();

    // Axis range: smallest positive p5 … largest p99, plus the SLO.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for st in rows.iter().filter_map(|r| r.0.as_ref()) {
        if st.p[0] > 0.0 {
            lo = lo.min(st.p[0]);
        } else if st.p[2] > 0.0 {
            lo = lo.min(st.p[2] / 10.0);
        }
        hi = hi.max(st.p[5]);
    }
    if let Some(s) = slo {
        lo = lo.min(s);
        hi = hi.max(s);
    }
    if !(lo.is_finite() && lo > 0.0) {
        lo = 1.0;
    }
    if !(hi.is_finite() && hi > 0.0) {
        hi = lo * 1000.0;
    }
    let x_axis = Axis::log(lo, hi);
    let n = series.len();
    let y_axis = Axis::bare(0.0, n as f64);

    let labels: Vec<String> = series
        .iter()
        .map(|s| truncate(&clean(&s.label), MAX_LABEL_CHARS))
        .collect();
    let label_w = labels
        .iter()
        .map(|l| text_width(l, 12.0))
        .fold(0.0, f64::max);
    let left = (label_w + 16.0).clamp(80.0, 260.0) as u32;
    let note_h = if dropped > 0 { 20 } else { 0 };
    let h = TOP + n as u32 * ROW_H + X_LABELS + 10 + note_h;

    render(title, W, h, |root| {
        draw_title(root, title, W)?;
        let mut legend = "Whiskers p5–p95 · box p25–p75 · bar = median · ○ = p99".to_string();
        if slo.is_some() {
            legend.push_str(" · vermillion: p95 above the SLO");
        }
        root.draw(&Text::new(
            legend,
            (16, 42),
            text(11.0, MUTED, HPos::Left, VPos::Center),
        ))?;

        // Alternate row bands, drawn under the grid.
        let band_x0 = (8 + left) as i32;
        let band_x1 = (W - RIGHT) as i32;
        for i in (1..n).step_by(2) {
            let y0 = (TOP + i as u32 * ROW_H) as i32;
            root.draw(&Rectangle::new(
                [(band_x0, y0), (band_x1, y0 + ROW_H as i32)],
                RGBColor(0xF6, 0xF7, 0xF9).filled(),
            ))?;
        }
        let frame = Frame {
            top: TOP,
            right: RIGHT,
            bottom: 10 + note_h,
            left: 8,
            x_labels: X_LABELS,
            y_labels: left,
            x_ticks: true,
        };
        let chart = build_chart(
            root,
            &frame,
            &x_axis,
            &y_axis,
            "latency (ms, log scale)",
            "",
        )?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let x_px = |v: f64| px(&chart, x_axis.pos(v), 0.0).0;

        if let Some(s) = slo {
            let sx = x_px(s);
            dashed(root, (sx, yr.start), (sx, yr.end), VERMILLION, 2)?;
            let label = format!("SLO {} ms", fmt_ms(s));
            root.draw(&Text::new(
                label,
                (sx, yr.start - 3),
                bold(11.0, VERMILLION, HPos::Center, VPos::Bottom),
            ))?;
        }

        for (i, (st, _)) in rows.iter().enumerate() {
            let cy = px(&chart, x_axis.lo, n as f64 - i as f64 - 0.5).1;
            let lx = xr.start - 8;
            match st {
                None => {
                    root.draw(&Text::new(
                        labels[i].clone(),
                        (lx, cy),
                        text(12.0, INK, HPos::Right, VPos::Center),
                    ))?;
                    root.draw(&Text::new(
                        "no latency samples",
                        (xr.start + 8, cy),
                        italic(11.0, MUTED, HPos::Left, VPos::Center),
                    ))?;
                }
                Some(st) => {
                    root.draw(&Text::new(
                        labels[i].clone(),
                        (lx, cy - 6),
                        text(12.0, INK, HPos::Right, VPos::Center),
                    ))?;
                    let n_txt = format!("n = {}", fmt_thousands(st.n));
                    root.draw(&Text::new(
                        n_txt,
                        (lx, cy + 8),
                        text(10.0, MUTED, HPos::Right, VPos::Center),
                    ))?;

                    let over = slo.is_some_and(|s| st.p[4] > s);
                    let color = if over { VERMILLION } else { OI_BLUE };
                    let [p5, p25, p50, p75, p95, p99] = st.p.map(x_px);
                    let whisker = ShapeStyle::from(INK).stroke_width(1);
                    root.draw(&PathElement::new(vec![(p5, cy), (p25, cy)], whisker))?;
                    root.draw(&PathElement::new(vec![(p75, cy), (p95, cy)], whisker))?;
                    for x in [p5, p95] {
                        root.draw(&PathElement::new(vec![(x, cy - 5), (x, cy + 5)], whisker))?;
                    }
                    let (b0, b1) = (p25.min(p75 - 1), p75.max(p25 + 1));
                    root.draw(&Rectangle::new(
                        [(b0, cy - 8), (b1, cy + 8)],
                        color.mix(0.28).filled(),
                    ))?;
                    root.draw(&Rectangle::new(
                        [(b0, cy - 8), (b1, cy + 8)],
                        ShapeStyle::from(color).stroke_width(1),
                    ))?;
                    root.draw(&PathElement::new(
                        vec![(p50, cy - 9), (p50, cy + 9)],
                        ShapeStyle::from(INK).stroke_width(2),
                    ))?;
                    root.draw(&Circle::new((p99, cy), 3, WHITE.filled()))?;
                    root.draw(&Circle::new(
                        (p99, cy),
                        3,
                        ShapeStyle::from(INK).stroke_width(1),
                    ))?;

                    let ann = format!("p50 {} · p95 {} ms", fmt_ms(st.p[2]), fmt_ms(st.p[4]));
                    let style = if over {
                        bold(11.0, VERMILLION, HPos::Left, VPos::Center)
                    } else {
                        text(11.0, MUTED, HPos::Left, VPos::Center)
                    };
                    root.draw(&Text::new(ann, (xr.end + 10, cy), style))?;
                }
            }
        }
        if dropped > 0 {
            let s = if dropped == 1 { "" } else { "s" };
            draw_note(
                root,
                &format!("{dropped} sample{s} dropped (non-finite or negative)."),
                h as i32 - 12,
            )?;
        }
        Ok(())
    })
}
