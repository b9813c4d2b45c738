//! Cost/quality scatter with optional log x axis, Pareto frontier and
//! reference lines. Point labels are placed greedily to avoid overlaps.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::common::*;
use super::{pareto_front, ScatterChart};

const W: u32 = 720;
const H: u32 = 420;
const LABEL_PX: f64 = 11.0;
const MAX_LABEL_CHARS: usize = 32;

/// Axis-aligned box in pixels.
#[derive(Clone, Copy)]
struct Bx {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Bx {
    fn around(c: (i32, i32), r: f64) -> Bx {
        Bx {
            x0: c.0 as f64 - r,
            y0: c.1 as f64 - r,
            x1: c.0 as f64 + r,
            y1: c.1 as f64 + r,
        }
    }
    fn overlap(&self, o: &Bx) -> f64 {
        let w = self.x1.min(o.x1) - self.x0.max(o.x0);
        let h = self.y1.min(o.y1) - self.y0.max(o.y0);
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }
    fn area(&self) -> f64 {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }
}

/// Candidate text anchor: alignment and position.
type Anchor = (HPos, VPos, f64, f64);
/// A label ready to draw: text, anchor, its box, bold or not.
type Placed = (String, Anchor, Bx, bool);

/// Box of a text of width `w`, height `h` anchored at `(x, y)`.
fn text_box(h_pos: HPos, v_pos: VPos, x: f64, y: f64, w: f64, h: f64) -> Bx {
    let x0 = match h_pos {
        HPos::Left => x,
        HPos::Right => x - w,
        HPos::Center => x - w / 2.0,
    };
    let y0 = match v_pos {
        VPos::Top => y,
        VPos::Bottom => y - h,
        VPos::Center => y - h / 2.0,
    };
    Bx {
        x0,
        y0,
        x1: x0 + w,
        y1: y0 + h,
    }
}

/// Range padded by 6 % (or a little when degenerate), kept inside [0, 1] when
/// the data is (shares, accuracies) and non-negative when the data is.
fn padded(min: f64, max: f64, unit_interval: bool) -> (f64, f64) {
    let pad = if max - min > 1e-9 {
        (max - min) * 0.06
    } else {
        (min.abs() * 0.1).max(0.05)
    };
    let (mut lo, mut hi) = (min - pad, max + pad);
    if min >= 0.0 {
        lo = lo.max(0.0);
    }
    if unit_interval && min >= 0.0 && max <= 1.0 {
        hi = hi.min(1.0);
    }
    (lo, hi)
}

/// Render a scatter chart (see [`ScatterChart`]).
pub fn scatter(c: &ScatterChart) -> String {
    let usable = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!c.log_x || x > 0.0);
    let valid: Vec<usize> = (0..c.points.len())
        .filter(|&i| usable(c.points[i].x, c.points[i].y))
        .collect();
    let dropped = c.points.len() - valid.len();
    let why = if c.log_x {
        "non-finite values, or x ≤ 0 on a log axis"
    } else {
        "non-finite values"
    };
    if valid.is_empty() {
        let msg = if c.points.is_empty() {
            "no data".to_string()
        } else {
            format!(
                "no data: all {} points were dropped ({why})",
                c.points.len()
            )
        };
        return message_chart(c.title, &msg, W, H);
    }
    let x_ref = c
        .x_line
        .filter(|(v, _)| v.is_finite() && (!c.log_x || *v > 0.0));
    let y_ref = c.y_line.filter(|(v, _)| v.is_finite());

    let xs = valid
        .iter()
        .map(|&i| c.points[i].x)
        .chain(x_ref.map(|r| r.0));
    let ys = valid
        .iter()
        .map(|&i| c.points[i].y)
        .chain(y_ref.map(|r| r.0));
    let (xmin, xmax) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (ymin, ymax) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let x_axis = if c.log_x {
        Axis::log(xmin, xmax)
    } else {
        let (lo, hi) = padded(xmin, xmax, false);
        Axis::linear(lo, hi, 6)
    };
    let (lo, hi) = padded(ymin, ymax, true);
    let y_axis = Axis::linear(lo, hi, 6);

    let front: Vec<usize> = if c.pareto_frontier {
        let pts: Vec<(f64, f64)> = valid
            .iter()
            .map(|&i| (c.points[i].x, c.points[i].y))
            .collect();
        pareto_front(&pts).into_iter().map(|k| valid[k]).collect()
    } else {
        Vec::new()
    };
    let on_front = |i: usize| front.contains(&i);
    let any_highlight = valid.iter().any(|&i| c.points[i].highlight);

    render(c.title, W, H, |root| {
        draw_title(root, c.title, W)?;
        let mut legend = Vec::new();
        if c.pareto_frontier {
            legend.push((
                Swatch::Diamond(VERMILLION),
                "Pareto-optimal (lower x and higher y are better)",
            ));
            legend.push((Swatch::Dot(OI_BLUE), "dominated"));
        }
        if any_highlight {
            legend.push((Swatch::Ring(INK), "highlighted"));
        }
        draw_legend(root, 16, 42, &legend)?;

        let frame = Frame {
            top: if legend.is_empty() { 40 } else { 58 },
            right: 24,
            bottom: if dropped > 0 { 22 } else { 8 },
            left: 8,
            x_labels: 44,
            y_labels: 58,
            x_ticks: true,
        };
        let chart = build_chart(root, &frame, &x_axis, &y_axis, c.x_label, c.y_label)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let plot = Bx {
            x0: xr.start as f64,
            y0: yr.start as f64,
            x1: xr.end as f64,
            y1: yr.end as f64,
        };
        let at = |x: f64, y: f64| px(&chart, x_axis.pos(x), y_axis.pos(y));
        let pixel: Vec<(i32, i32)> = c.points.iter().map(|p| at(p.x, p.y)).collect();

        // Frontier as a step line: from each optimal point the best reachable
        // y stays flat until the next (costlier, better) optimal point.
        let mut path: Vec<(i32, i32)> = Vec::new();
        for &i in &front {
            if let Some(&prev) = path.last() {
                path.push((pixel[i].0, prev.1));
            }
            path.push(pixel[i]);
        }

        // Everything labels should keep clear of: markers and the frontier.
        let mut obstacles: Vec<Bx> = valid
            .iter()
            .map(|&i| Bx::around(pixel[i], if c.points[i].highlight { 11.0 } else { 6.0 }))
            .collect();
        obstacles.extend(path.windows(2).map(|w| Bx {
            x0: w[0].0.min(w[1].0) as f64 - 2.0,
            y0: w[0].1.min(w[1].1) as f64 - 2.0,
            x1: w[0].0.max(w[1].0) as f64 + 2.0,
            y1: w[0].1.max(w[1].1) as f64 + 2.0,
        }));

        // Reference lines; their labels go to the least crowded end.
        let mut ref_labels = Vec::new();
        if let Some((v, label)) = x_ref {
            let lx = at(v, 0.0).0;
            dashed(root, (lx, yr.start), (lx, yr.end), INK, 1)?;
            let (x, top, bottom) = (lx as f64, plot.y0 + 4.0, plot.y1 - 4.0);
            let cands = [
                (HPos::Right, VPos::Top, x - 5.0, top),
                (HPos::Left, VPos::Top, x + 5.0, top),
                (HPos::Right, VPos::Bottom, x - 5.0, bottom),
                (HPos::Left, VPos::Bottom, x + 5.0, bottom),
            ];
            ref_labels.push((truncate(&clean(label), 48), cands));
        }
        if let Some((v, label)) = y_ref {
            let ly = at(x_axis_lo(&x_axis, c.log_x), v).1;
            dashed(root, (xr.start, ly), (xr.end, ly), INK, 1)?;
            let (y, left, right) = (ly as f64, plot.x0 + 5.0, plot.x1 - 5.0);
            let cands = [
                (HPos::Right, VPos::Bottom, right, y - 3.0),
                (HPos::Right, VPos::Top, right, y + 3.0),
                (HPos::Left, VPos::Bottom, left, y - 3.0),
                (HPos::Left, VPos::Top, left, y + 3.0),
            ];
            ref_labels.push((truncate(&clean(label), 48), cands));
        }
        let mut placed: Vec<Placed> = Vec::new();
        for (label, cands) in ref_labels {
            let (k, b) = place(
                &cands,
                text_width(&label, LABEL_PX),
                &obstacles,
                None,
                &plot,
            );
            obstacles.push(b);
            placed.push((label, cands[k], b, false));
        }

        if path.len() > 1 {
            root.draw(&PathElement::new(
                path.clone(),
                ShapeStyle::from(VERMILLION.mix(0.75)).stroke_width(2),
            ))?;
        }
        // Points: dominated first so optimal ones sit on top.
        for &i in valid.iter().filter(|&&i| !on_front(i)) {
            root.draw(&Circle::new(pixel[i], 5, OI_BLUE.mix(0.9).filled()))?;
        }
        for &i in &front {
            diamond(root, pixel[i], 7, VERMILLION)?;
        }
        for &i in valid.iter().filter(|&&i| c.points[i].highlight) {
            root.draw(&Circle::new(
                pixel[i],
                11,
                ShapeStyle::from(INK).stroke_width(2),
            ))?;
        }

        // Point labels: highlighted, then optimal, then the rest; each takes
        // the first candidate position with the least overlap.
        let mut order = valid.clone();
        order.sort_by_key(|&i| (!c.points[i].highlight, !on_front(i), i));
        for i in order {
            let p = &c.points[i];
            let own = valid.iter().position(|&v| v == i);
            let label = truncate(&clean(&p.label), MAX_LABEL_CHARS);
            if label.trim().is_empty() {
                continue;
            }
            let (cx, cy) = (pixel[i].0 as f64, pixel[i].1 as f64);
            let d = if p.highlight { 13.0 } else { 9.0 };
            let e = d * 0.7;
            let cands = [
                (HPos::Left, VPos::Center, cx + d, cy),
                (HPos::Right, VPos::Center, cx - d, cy),
                (HPos::Left, VPos::Bottom, cx + e, cy - e),
                (HPos::Left, VPos::Top, cx + e, cy + e),
                (HPos::Right, VPos::Bottom, cx - e, cy - e),
                (HPos::Right, VPos::Top, cx - e, cy + e),
                (HPos::Center, VPos::Bottom, cx, cy - d),
                (HPos::Center, VPos::Top, cx, cy + d),
            ];
            let (k, b) = place(&cands, text_width(&label, LABEL_PX), &obstacles, own, &plot);
            obstacles.push(b);
            placed.push((label, cands[k], b, p.highlight));
        }
        for (label, (h, v, x, y), b, strong) in placed {
            root.draw(&Rectangle::new(
                [
                    (b.x0.round() as i32 - 1, b.y0.round() as i32),
                    (b.x1.round() as i32 + 1, b.y1.round() as i32),
                ],
                WHITE.mix(0.8).filled(),
            ))?;
            let style = if strong {
                bold(LABEL_PX, INK, h, v)
            } else {
                text(LABEL_PX, INK, h, v)
            };
            root.draw(&Text::new(
                label,
                (x.round() as i32, y.round() as i32),
                style,
            ))?;
        }

        if dropped > 0 {
            let s = if dropped == 1 { "" } else { "s" };
            draw_note(
                root,
                &format!("{dropped} point{s} not shown ({why})."),
                H as i32 - 10,
            )?;
        }
        Ok(())
    })
}

/// Pick the candidate anchor whose text box (width `w`) overlaps the
/// obstacles least (ignoring obstacle `own`, the label's own marker) and stays inside
/// the plot; ties go to the earlier candidate.
fn place(cands: &[Anchor], w: f64, obstacles: &[Bx], own: Option<usize>, plot: &Bx) -> (usize, Bx) {
    let mut best = (
        f64::INFINITY,
        0,
        Bx {
            x0: 0.0,
            y0: 0.0,
            x1: 0.0,
            y1: 0.0,
        },
    );
    for (k, &(h, v, x, y)) in cands.iter().enumerate() {
        let b = text_box(h, v, x, y, w, 14.0);
        let clash: f64 = obstacles
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != own)
            .map(|(_, o)| o.overlap(&b))
            .sum();
        let outside = b.area() - plot.overlap(&b);
        let penalty = clash + 3.0 * outside;
        if penalty < best.0 - 1e-9 {
            best = (penalty, k, b);
        }
    }
    (best.1, best.2)
}

/// Any x inside the axis, in data space (only the y pixel is used).
fn x_axis_lo(axis: &Axis, log: bool) -> f64 {
    if log {
        10f64.powf(axis.lo)
    } else {
        axis.lo
    }
}
