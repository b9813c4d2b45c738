//! Confusion-matrix heatmap: rows = gold, columns = predicted, colour by
//! row-normalised share, counts printed in the cells, diagonal outlined.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::common::*;

/// More labels than this are cut down to the most frequent gold labels.
pub const MAX_HEATMAP_LABELS: usize = 30;

/// White → blue sequential ramp (ColorBrewer "Blues", starting at pure white).
const RAMP: [(u8, u8, u8); 9] = [
    (0xFF, 0xFF, 0xFF),
    (0xDE, 0xEB, 0xF7),
    (0xC6, 0xDB, 0xEF),
    (0x9E, 0xCA, 0xE1),
    (0x6B, 0xAE, 0xD6),
    (0x42, 0x92, 0xC6),
    (0x21, 0x71, 0xB5),
    (0x08, 0x51, 0x9C),
    (0x08, 0x30, 0x6B),
];

fn ramp(share: f64) -> RGBColor {
    let t = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    } * (RAMP.len() - 1) as f64;
    let k = (t.floor() as usize).min(RAMP.len() - 2);
    let f = t - k as f64;
    let (a, b) = (RAMP[k], RAMP[k + 1]);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// WCAG relative luminance.
fn luminance(c: RGBColor) -> f64 {
    let lin = |v: u8| {
        let s = v as f64 / 255.0;
        if s <= 0.04045 {
            s / 12.92
        } else {
            ((s + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2)
}

/// Rows = gold labels, columns = predicted labels; `counts[gold][pred]`.
/// Ragged or short `counts` are read as zeros. With more than
/// [`MAX_HEATMAP_LABELS`] labels only the most frequent gold labels are shown
/// (rows and the matching columns), with a note; shares still use the full
/// row totals.
pub fn confusion_heatmap(title: &str, labels: &[String], counts: &[Vec<usize>]) -> String {
    let n = labels.len();
    if n == 0 {
        return message_chart(title, "no data", 480, 300);
    }
    let cell_at = |i: usize, j: usize| counts.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let totals: Vec<usize> = (0..n)
        .map(|i| (0..n).fold(0usize, |acc, j| acc.saturating_add(cell_at(i, j))))
        .collect();
    let grand = totals.iter().fold(0usize, |acc, &t| acc.saturating_add(t));

    let mut shown: Vec<usize> = (0..n).collect();
    if n > MAX_HEATMAP_LABELS {
        shown.sort_by_key(|&i| (std::cmp::Reverse(totals[i]), i));
        shown.truncate(MAX_HEATMAP_LABELS);
        shown.sort_unstable();
    }
    let m = shown.len();
    let cell = (480 / m as u32).clamp(15, 46);
    let label_px = (cell as f64 * 0.55).clamp(9.0, 12.0);
    let count_px = (cell as f64 * 0.36).clamp(7.5, 13.0);
    let max_chars = if m <= 12 { 24 } else { 18 };
    let names: Vec<String> = shown
        .iter()
        .map(|&i| truncate(&clean(&labels[i]), max_chars))
        .collect();
    let lab_w = names
        .iter()
        .map(|s| text_width(s, label_px))
        .fold(0.0, f64::max)
        .ceil() as u32;

    let mut notes = Vec::new();
    if m < n {
        let covered = shown
            .iter()
            .fold(0usize, |acc, &i| acc.saturating_add(totals[i]));
        notes.push(format!(
            "Showing the {m} most frequent of {n} gold labels ({} of {} examples).",
            fmt_thousands(covered),
            fmt_thousands(grand)
        ));
        notes
            .push("Columns for hidden labels are omitted; shares use full row totals.".to_string());
    }
    if grand == 0 {
        notes.push("No examples were counted.".to_string());
    }

    let size = m as u32 * cell;
    let top = 58;
    let left = 16 + 20 + lab_w + 8;
    let bar_w = 96;
    let notes_h = 18 * notes.len() as u32;
    let width = (left + size + bar_w).max(460);
    let height = top + size + 8 + lab_w + 28 + notes_h;

    render(title, width, height, |root| {
        draw_title(root, title, width)?;
        let x0 = left as i32;
        let y0 = top as i32;
        let c = cell as i32;
        let gap = if cell >= 18 { 1 } else { 0 };
        for (r, &gi) in shown.iter().enumerate() {
            for (k, &pj) in shown.iter().enumerate() {
                let count = cell_at(gi, pj);
                let share = if totals[gi] > 0 {
                    count as f64 / totals[gi] as f64
                } else {
                    0.0
                };
                let fill = ramp(share);
                let (cx0, cy0) = (x0 + k as i32 * c, y0 + r as i32 * c);
                root.draw(&Rectangle::new(
                    [(cx0, cy0), (cx0 + c - gap, cy0 + c - gap)],
                    fill.filled(),
                ))?;
                if count == 0 && m > 12 {
                    continue;
                }
                let ink = if count == 0 {
                    RGBColor(0xAA, 0xAA, 0xAA)
                } else if luminance(fill) < 0.21 {
                    WHITE
                } else {
                    INK
                };
                let centre = (cx0 + (c - gap) / 2, cy0 + (c - gap) / 2);
                root.draw(&Text::new(
                    fmt_count(count),
                    centre,
                    text(count_px, ink, HPos::Center, VPos::Center),
                ))?;
            }
        }
        // Frame and outlined diagonal.
        root.draw(&Rectangle::new(
            [(x0 - 1, y0 - 1), (x0 + size as i32, y0 + size as i32)],
            ShapeStyle::from(AXIS).stroke_width(1),
        ))?;
        for k in 0..m as i32 {
            let (cx0, cy0) = (x0 + k * c, y0 + k * c);
            root.draw(&Rectangle::new(
                [(cx0, cy0), (cx0 + c - gap, cy0 + c - gap)],
                ShapeStyle::from(INK).stroke_width(2),
            ))?;
        }
        // Row labels (gold) and rotated column labels (predicted).
        for (k, name) in names.iter().enumerate() {
            let mid = k as i32 * c + (c - gap) / 2;
            root.draw(&Text::new(
                name.clone(),
                (x0 - 6, y0 + mid),
                text(label_px, INK, HPos::Right, VPos::Center),
            ))?;
            let style =
                text(label_px, INK, HPos::Right, VPos::Center).transform(FontTransform::Rotate270);
            root.draw(&Text::new(
                name.clone(),
                (x0 + mid, y0 + size as i32 + 6),
                style,
            ))?;
        }
        let axis_title = bold(12.0, INK, HPos::Center, VPos::Center);
        root.draw(&Text::new(
            "gold label",
            (24, y0 + size as i32 / 2),
            axis_title.transform(FontTransform::Rotate270),
        ))?;
        let bottom_y = y0 + size as i32 + 6 + lab_w as i32 + 14;
        root.draw(&Text::new(
            "predicted label",
            (x0 + size as i32 / 2, bottom_y),
            axis_title,
        ))?;

        // Colour bar.
        let bx = x0 + size as i32 + 20;
        let bh = (size as i32).clamp(60, 180);
        let steps = 24;
        for s in 0..steps {
            let (ya, yb) = (y0 + bh * s / steps, y0 + bh * (s + 1) / steps);
            let share = 1.0 - (s as f64 + 0.5) / steps as f64;
            root.draw(&Rectangle::new(
                [(bx, ya), (bx + 12, yb)],
                ramp(share).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bx, y0), (bx + 12, y0 + bh)],
            ShapeStyle::from(AXIS).stroke_width(1),
        ))?;
        for (frac, label) in [(0.0, "100%"), (0.5, "50%"), (1.0, "0%")] {
            let y = y0 + (bh as f64 * frac).round() as i32;
            root.draw(&PathElement::new(
                vec![(bx + 12, y), (bx + 16, y)],
                ShapeStyle::from(AXIS),
            ))?;
            root.draw(&Text::new(
                label,
                (bx + 19, y),
                text(10.0, MUTED, HPos::Left, VPos::Center),
            ))?;
        }
        root.draw(&Text::new(
            "row share",
            (bx - 2, y0 - 8),
            text(10.0, MUTED, HPos::Left, VPos::Bottom),
        ))?;

        for (k, note) in notes.iter().enumerate() {
            draw_note(root, note, (height - notes_h) as i32 + 18 * k as i32 + 6)?;
        }
        Ok(())
    })
}
