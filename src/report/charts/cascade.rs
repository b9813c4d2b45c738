//! Cascade threshold sweep as three stacked panels sharing the threshold axis:
//! accuracy (zoomed to the data and the floor, so the floor crossing is
//! visible), share answered locally (0–100 %), and $ per 1,000 queries.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::common::*;
use super::CascadeChart;

const W: u32 = 720;
const H: u32 = 540;
/// Bottom edges of the accuracy and share panels.
const SPLITS: [u32; 2] = [252, 372];
const Y_LABELS: u32 = 62;

/// Pixel polylines of one series, broken wherever a value is non-finite.
fn segments(
    chart: &Chart,
    x: &Axis,
    y: &Axis,
    order: &[usize],
    t: &[f64],
    v: &[f64],
) -> Vec<Vec<(i32, i32)>> {
    let mut out: Vec<Vec<(i32, i32)>> = vec![Vec::new()];
    for &i in order {
        if v[i].is_finite() {
            if let Some(seg) = out.last_mut() {
                seg.push(px(chart, x.pos(t[i]), y.pos(v[i])));
            }
        } else if !out.last().is_some_and(|s| s.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn draw_series(
    root: &Root,
    segs: &[Vec<(i32, i32)>],
    color: RGBColor,
    square: bool,
    markers: bool,
) -> Drawn {
    for seg in segs {
        if seg.len() > 1 {
            root.draw(&PathElement::new(
                seg.clone(),
                ShapeStyle::from(color).stroke_width(2),
            ))?;
        }
        if markers || seg.len() == 1 {
            for &(x, y) in seg {
                if square {
                    root.draw(&Rectangle::new(
                        [(x - 3, y - 3), (x + 3, y + 3)],
                        color.filled(),
                    ))?;
                } else {
                    root.draw(&Circle::new((x, y), 3, color.filled()))?;
                }
            }
        }
    }
    Ok(())
}

/// Render a cascade threshold sweep (see [`CascadeChart`]).
pub fn cascade(c: &CascadeChart) -> String {
    let n = c
        .thresholds
        .len()
        .min(c.accuracy.len())
        .min(c.share_local.len())
        .min(c.usd_per_1000.len());
    let mut order: Vec<usize> = (0..n).filter(|&i| c.thresholds[i].is_finite()).collect();
    if order.is_empty() {
        return message_chart(c.title, "no data", W, H);
    }
    order.sort_by(|&a, &b| c.thresholds[a].total_cmp(&c.thresholds[b]).then(a.cmp(&b)));
    let (t, acc, share, cost) = (c.thresholds, c.accuracy, c.share_local, c.usd_per_1000);
    let dropped = (n - order.len())
        + order
            .iter()
            .map(|&i| {
                [acc[i], share[i], cost[i]]
                    .iter()
                    .filter(|v| !v.is_finite())
                    .count()
            })
            .sum::<usize>();

    let chosen = c.chosen.filter(|v| v.is_finite());
    let floor = c.floor.filter(|v| v.is_finite());
    let (mut lo, mut hi) = (t[order[0]], t[*order.last().unwrap_or(&order[0])]);
    if let Some(ch) = chosen {
        lo = lo.min(ch);
        hi = hi.max(ch);
    }
    let x_axis = Axis::linear(lo, hi, 10);
    let acc_span = order
        .iter()
        .map(|&i| acc[i])
        .chain(floor)
        .filter(|v| v.is_finite());
    let (amin, amax) = acc_span.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let acc_axis = if amin.is_finite() {
        let pad = ((amax - amin) * 0.08).max(0.005);
        let lo = if amin >= 0.0 {
            (amin - pad).max(0.0)
        } else {
            amin - pad
        };
        let hi = if amax <= 1.0 {
            (amax + pad).min(1.0)
        } else {
            amax + pad
        };
        Axis::linear(lo, hi, 4)
    } else {
        Axis::linear(0.0, 1.0, 4)
    };
    let share_axis = Axis {
        percent: true,
        ..Axis::linear(0.0, 1.0, 4)
    };
    let max_cost = order
        .iter()
        .map(|&i| cost[i])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let cost_axis = Axis::linear(0.0, if max_cost > 0.0 { max_cost } else { 1.0 }, 3);
    let markers = order.len() <= 40;

    // Values at the sweep point nearest the chosen threshold.
    let at_chosen = chosen.map(|ch| {
        *order
            .iter()
            .min_by(|&&a, &&b| (t[a] - ch).abs().total_cmp(&(t[b] - ch).abs()))
            .unwrap_or(&order[0])
    });

    render(c.title, W, H, |root| {
        draw_title(root, c.title, W)?;
        let mut legend = vec![
            (Swatch::Line(OI_BLUE), "accuracy"),
            (Swatch::Line(OI_GREEN), "answered locally"),
            (Swatch::Line(VERMILLION), "$ per 1,000 queries"),
        ];
        if floor.is_some() {
            legend.push((Swatch::Dashed(INK, 1), "accuracy floor"));
        }
        if chosen.is_some() {
            legend.push((Swatch::Dashed(OI_PURPLE, 2), "chosen t"));
        }
        draw_legend(root, 16, 42, &legend)?;
        if let (Some(ch), Some(k)) = (chosen, at_chosen) {
            let part = |v: f64, f: &dyn Fn(f64) -> String| {
                if v.is_finite() {
                    f(v)
                } else {
                    "–".to_string()
                }
            };
            let summary = format!(
                "At t = {}: accuracy {} · {} answered locally · ${} per 1,000 queries",
                fmt_num(ch),
                part(acc[k], &|v| format!("{v:.3}")),
                part(share[k], &|v| format!("{:.0}%", v * 100.0)),
                part(cost[k], &|v| fmt_num(v)),
            );
            root.draw(&Text::new(
                summary,
                (16, 62),
                text(11.0, MUTED, HPos::Left, VPos::Center),
            ))?;
        }

        let panels = root.split_by_breakpoints(Vec::<u32>::new(), SPLITS);
        let frame = |top: u32, bottom: u32, last: bool| Frame {
            top,
            right: 24,
            bottom,
            left: 8,
            x_labels: if last { 46 } else { 6 },
            y_labels: Y_LABELS,
            x_ticks: last,
        };
        let x_desc = "confidence threshold t (local answer kept when confidence ≥ t)";
        let bottom = if dropped > 0 { 22 } else { 6 };
        let a = build_chart(
            &panels[0],
            &frame(86, 0, false),
            &x_axis,
            &acc_axis,
            "",
            "accuracy",
        )?;
        let b = build_chart(
            &panels[1],
            &frame(10, 0, false),
            &x_axis,
            &share_axis,
            "",
            "answered locally",
        )?;
        let cst = build_chart(
            &panels[2],
            &frame(10, bottom, true),
            &x_axis,
            &cost_axis,
            x_desc,
            "$ / 1k queries",
        )?;
        let (axr, ayr) = a.plotting_area().get_pixel_range();

        if let Some(f) = floor {
            let ly = px(&a, x_axis.lo, acc_axis.pos(f)).1;
            dashed(root, (axr.start, ly), (axr.end, ly), INK, 1)?;
            let label = format!("accuracy floor {}", fmt_num(f));
            // Below the line at the left, where accuracy is usually lowest…
            // unless the floor sits at the bottom of the panel.
            let below = ly + 18 < ayr.end;
            let (x, y, v) = if below {
                (axr.start + 6, ly + 4, VPos::Top)
            } else {
                (axr.start + 6, ly - 4, VPos::Bottom)
            };
            let w = text_width(&label, 11.0) as i32;
            let (y0, y1) = if below { (y, y + 14) } else { (y - 14, y) };
            root.draw(&Rectangle::new(
                [(x - 2, y0), (x + w + 2, y1)],
                WHITE.mix(0.85).filled(),
            ))?;
            root.draw(&Text::new(label, (x, y), text(11.0, INK, HPos::Left, v)))?;
        }
        if let Some(ch) = chosen {
            let cx = px(&a, x_axis.pos(ch), 0.0).0;
            for chart in [&a, &b, &cst] {
                let (_, yr) = chart.plotting_area().get_pixel_range();
                dashed(root, (cx, yr.start), (cx, yr.end), OI_PURPLE, 2)?;
            }
            let label = format!("chosen t = {}", fmt_num(ch));
            root.draw(&Text::new(
                label,
                (cx, ayr.start - 3),
                bold(11.0, OI_PURPLE, HPos::Center, VPos::Bottom),
            ))?;
        }

        let acc_segs = segments(&a, &x_axis, &acc_axis, &order, t, acc);
        let share_segs = segments(&b, &x_axis, &share_axis, &order, t, share);
        let cost_segs = segments(&cst, &x_axis, &cost_axis, &order, t, cost);
        draw_series(root, &acc_segs, OI_BLUE, false, markers)?;
        draw_series(root, &share_segs, OI_GREEN, true, markers)?;
        draw_series(root, &cost_segs, VERMILLION, false, markers)?;

        if let Some(k) = at_chosen {
            let ring = ShapeStyle::from(OI_PURPLE).stroke_width(2);
            for (chart, axis, v) in [
                (&a, &acc_axis, acc[k]),
                (&b, &share_axis, share[k]),
                (&cst, &cost_axis, cost[k]),
            ] {
                if v.is_finite() {
                    root.draw(&Circle::new(
                        px(chart, x_axis.pos(t[k]), axis.pos(v)),
                        6,
                        ring,
                    ))?;
                }
            }
        }
        if dropped > 0 {
            let s = if dropped == 1 { "" } else { "s" };
            draw_note(
                root,
                &format!("{dropped} non-finite value{s} skipped (lines are broken there)."),
                H as i32 - 10,
            )?;
        }
        Ok(())
    })
}
