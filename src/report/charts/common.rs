//! Shared pieces: palette, text styles, tick generation, number formatting,
//! the SVG post-processing step and the "no data" chart.
//!
//! Everything here is deterministic: no hashing, no clocks, no randomness.

use std::fmt::Write as _;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(crate) type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(crate) type Drawn = Result<(), Box<dyn std::error::Error>>;
/// The coordinate system used by every chart: two linear f64 axes whose tick
/// positions are chosen by us (log axes are drawn in log10 space).
pub(crate) type Coords = Cartesian2d<Axis, Axis>;
pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Coords>;

// Okabe–Ito colour-blind-safe palette (the subset in use).
pub(crate) const OI_GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);
pub(crate) const OI_BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
pub(crate) const VERMILLION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
pub(crate) const OI_PURPLE: RGBColor = RGBColor(0xCC, 0x79, 0xA7);
// Neutrals.
pub(crate) const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(crate) const MUTED: RGBColor = RGBColor(0x5F, 0x5F, 0x5F);
pub(crate) const AXIS: RGBColor = RGBColor(0x8A, 0x8A, 0x8A);
pub(crate) const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
pub(crate) const GRID_MINOR: RGBColor = RGBColor(0xF0, 0xF0, 0xF0);

pub(crate) const FONT: &str = "sans-serif";
/// plotters' SVG backend writes `font-size = size / 1.24`; we think in CSS px.
const FONT_SCALE: f64 = 1.24;
/// A text style of `px` CSS pixels.
pub(crate) fn text(px: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, v))
}

pub(crate) fn bold(px: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE, FontStyle::Bold)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, v))
}

pub(crate) fn italic(px: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE, FontStyle::Italic)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, v))
}

/// Approximate advance width of a glyph in em, modelled on DejaVu Sans (the
/// widest common default sans-serif), so estimates err on the generous side.
fn char_em(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '\'' | '|' | '.' | ',' | ':' | ';' | '!' | '·' => 0.3,
        ' ' => 0.32,
        'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '-' | '/' => 0.42,
        'm' | 'M' | 'W' | '%' | '@' | '—' => 0.98,
        'w' => 0.82,
        'A'..='Z' => 0.72,
        '0'..='9' | 'a'..='z' | '$' | '_' | '+' | '=' | '<' | '>' | '&' | '"' | '…' | '–' => {
            0.64
        }
        c if (c as u32) >= 0x1100 && is_wide(c) => 1.0,
        _ => 0.7,
    }
}

/// East Asian wide ranges (CJK, Hangul, kana, full-width forms, emoji).
fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFF00..=0xFF60 | 0x1F300..=0x1FAFF)
}

/// Estimated rendered width of `s` at `px`.
pub(crate) fn text_width(s: &str, px: f64) -> f64 {
    s.chars().map(char_em).sum::<f64>() * px
}

/// Shorten `s` to at most `max` characters, ending with an ellipsis.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub(crate) fn escape_xml(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters that are not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Control characters are illegal in XML 1.0 even when escaped; plotters
/// escapes markup characters but passes these through, so scrub user strings.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if (c as u32) < 0x20 { ' ' } else { c })
        .collect()
}

/// Format a number for a tick label or annotation: at most 4 significant
/// digits, no trailing zeros, exponent form only for very large/small values.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    if a < 1e-12 {
        return "0".to_string();
    }
    if !(1e-4..1e7).contains(&a) {
        return format!("{v:.1e}").replace(".0e", "e");
    }
    let mag = a.log10().floor() as i32;
    let decimals = (3 - mag).clamp(0, 7) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn fmt_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Compact counts for heatmap cells: 999, 1.2k, 12k, 1.2M.
pub(crate) fn fmt_count(c: usize) -> String {
    match c {
        0..=999 => c.to_string(),
        1_000..=9_999 => format!("{:.1}k", c as f64 / 1e3).replace(".0k", "k"),
        10_000..=999_999 => format!("{}k", (c as f64 / 1e3).round() as u64),
        _ => format!("{:.1}M", c as f64 / 1e6).replace(".0M", "M"),
    }
}

/// Linear-interpolated percentile of an ascending, non-empty slice; `p` in 0..=100.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn pow10(e: i32) -> f64 {
    // 10^-3 computed as 1/1000 is the correctly rounded 0.001; powi(-3) is not.
    if e >= 0 {
        10f64.powi(e)
    } else {
        1.0 / 10f64.powi(-e)
    }
}

/// One axis: its range and tick positions, all in *axis space* (log10 of the
/// data value for log axes).
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub major: Vec<f64>,
    pub minor: Vec<f64>,
    pub log: bool,
    /// Label ticks as percentages (0.25 → "25%").
    pub percent: bool,
}

impl Axis {
    /// "Nice" linear ticks (steps of 1, 2, 2.5 or 5 × 10^k) covering `lo..=hi`,
    /// with roughly `target` intervals. The range is widened to whole ticks.
    pub fn linear(lo: f64, hi: f64, target: usize) -> Axis {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo.min(hi), lo.max(hi))
        } else {
            (0.0, 1.0)
        };
        if hi - lo <= 1e-12 * lo.abs().max(1.0) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= pad;
            hi += pad;
        }
        let raw = (hi - lo) / target.max(1) as f64;
        let k = raw.log10().floor() as i32;
        let norm = raw / pow10(k);
        let eps = 1e-9;
        let mant = if norm <= 1.0 + eps {
            1.0
        } else if norm <= 2.0 + eps {
            2.0
        } else if norm <= 2.5 + eps {
            2.5
        } else if norm <= 5.0 + eps {
            5.0
        } else {
            10.0
        };
        let step = mant * pow10(k);
        let i0 = (lo / step + eps).floor() as i64;
        let i1 = (hi / step - eps).ceil() as i64;
        // value = i * mant * 10^k, computed so that e.g. 3 × 0.1 prints as 0.3.
        let at = |i: i64| {
            if k >= 0 {
                i as f64 * mant * pow10(k)
            } else {
                i as f64 * mant / pow10(-k)
            }
        };
        let major: Vec<f64> = (i0..=i1).map(at).collect();
        Axis {
            lo: at(i0),
            hi: at(i1),
            major,
            minor: Vec::new(),
            log: false,
            percent: false,
        }
    }

    /// Log axis for positive data in `lo..=hi`. The ends snap outwards to
    /// 1, 2 or 5 × 10^k (after a small margin so points do not sit on the
    /// frame); decades are labelled, and 2× and 5× values too when the axis
    /// spans at most three decades. Minor gridlines at 2..9 × 10^k.
    pub fn log(lo: f64, hi: f64) -> Axis {
        let lo = if lo.is_finite() && lo > 0.0 { lo } else { 1.0 };
        let hi = if hi.is_finite() && hi > 0.0 {
            hi.max(lo)
        } else {
            lo * 10.0
        };
        // Candidate "nice" values m × 10^e, in axis space.
        let nice = |e: i32, m: f64| (m * pow10(e)).log10();
        let eps = 1e-9;
        let (l, h) = (lo.log10() - 0.04, hi.log10() + 0.04);
        let mut a = l.floor() as i32;
        let mut b = h.ceil() as i32;
        if b - a < 1 {
            b = a + 1;
        }
        let mut start = nice(a, 1.0);
        for m in [2.0, 5.0] {
            if nice(a, m) <= l + eps {
                start = nice(a, m);
            }
        }
        let mut end = nice(b, 1.0);
        for m in [5.0, 2.0] {
            if nice(b - 1, m) >= h - eps {
                end = nice(b - 1, m);
            }
        }
        if end - start < 0.99 {
            // Always show at least one full decade.
            a = start.floor() as i32;
            start = a as f64;
            end = start + 1.0;
            b = a + 1;
        }
        let span = end - start;
        let stride = ((b - a + 7) / 8).max(1); // at most ~8 labelled decades
        let mut major = Vec::new();
        let mut minor = Vec::new();
        for e in a..=b {
            for m in 1..=9 {
                let v = nice(e, m as f64);
                if v < start - eps || v > end + eps {
                    continue;
                }
                let labelled = if m == 1 {
                    (e - a) % stride == 0
                } else {
                    span <= 3.0 + eps && (m == 2 || m == 5)
                };
                if labelled {
                    major.push(v);
                } else if m == 1 || span <= 6.0 {
                    minor.push(v);
                }
            }
        }
        Axis {
            lo: start,
            hi: end,
            major,
            minor,
            log: true,
            percent: false,
        }
    }

    /// Data value → axis space, clamped to the axis range.
    pub fn pos(&self, v: f64) -> f64 {
        let t = if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        };
        t.clamp(self.lo, self.hi)
    }

    pub fn label(&self, t: f64) -> String {
        if self.log {
            fmt_num(10f64.powf(t))
        } else if self.percent {
            format!("{}%", fmt_num(t * 100.0))
        } else {
            fmt_num(t)
        }
    }

    /// An axis with no ticks at all (e.g. the row axis of the latency chart).
    pub fn bare(lo: f64, hi: f64) -> Axis {
        Axis {
            lo,
            hi,
            major: Vec::new(),
            minor: Vec::new(),
            log: false,
            percent: false,
        }
    }

    /// Tick values in data space (what the labels say).
    #[cfg(test)]
    pub fn tick_values(&self) -> Vec<String> {
        self.major.iter().map(|&t| self.label(t)).collect()
    }
}

/// plotters sees our axis as a linear range whose key points are exactly our
/// major (labelled, bold grid) and minor (light grid) ticks.
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (*v - self.lo) / (self.hi - self.lo);
        let f = if f.is_finite() {
            f.clamp(-1.0, 2.0)
        } else {
            0.0
        };
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Plot-area placement inside a drawing area, in pixels.
pub(crate) struct Frame {
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    pub left: u32,
    pub x_labels: u32,
    pub y_labels: u32,
    /// Print x tick labels (off for stacked panels sharing the bottom axis).
    pub x_ticks: bool,
}

/// Build a chart on `area` with our axes and draw its mesh.
pub(crate) fn build_chart<'a, 'b>(
    area: &'a Root<'b>,
    f: &Frame,
    x: &Axis,
    y: &Axis,
    x_desc: &str,
    y_desc: &str,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(f.top)
        .margin_right(f.right)
        .margin_bottom(f.bottom)
        .margin_left(f.left)
        .x_label_area_size(f.x_labels)
        .y_label_area_size(f.y_labels)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let xf = |v: &f64| x.label(*v);
    let yf = |v: &f64| y.label(*v);
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID)
        .light_line_style(GRID_MINOR)
        .axis_style(AXIS)
        .set_all_tick_mark_size(4)
        .label_style(text(11.0, MUTED, HPos::Center, VPos::Center))
        .axis_desc_style(text(12.0, INK, HPos::Center, VPos::Center))
        .x_label_formatter(&xf)
        .y_label_formatter(&yf);
    if !f.x_ticks {
        mesh.x_label_formatter(&|_| String::new());
    }
    if !x_desc.is_empty() {
        mesh.x_desc(clean(x_desc));
    }
    if !y_desc.is_empty() {
        mesh.y_desc(clean(y_desc));
    }
    mesh.draw()?;
    Ok(chart)
}

/// Pixel position of an axis-space point.
pub(crate) fn px(chart: &Chart, x: f64, y: f64) -> (i32, i32) {
    chart.backend_coord(&(x, y))
}

/// Straight dashed line in pixel space.
pub(crate) fn dashed(
    root: &Root,
    a: (i32, i32),
    b: (i32, i32),
    color: RGBColor,
    width: u32,
) -> Drawn {
    let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
    let len = (dx * dx + dy * dy).sqrt();
    if len < 1.0 {
        return Ok(());
    }
    let (dash, gap) = (6.0, 4.0);
    let style = ShapeStyle::from(color).stroke_width(width);
    let mut s = 0.0;
    while s < len {
        let e = (s + dash).min(len);
        let p = |t: f64| {
            (
                (a.0 as f64 + dx * t / len).round() as i32,
                (a.1 as f64 + dy * t / len).round() as i32,
            )
        };
        root.draw(&PathElement::new(vec![p(s), p(e)], style))?;
        s += dash + gap;
    }
    Ok(())
}

/// Chart title (top left) – shared by all charts.
pub(crate) fn draw_title(root: &Root, title: &str, width: u32) -> Drawn {
    let max_chars = ((width as f64 - 32.0) / (15.0 * 0.7)) as usize;
    root.draw(&Text::new(
        truncate(&clean(title), max_chars),
        (16, 12),
        bold(15.0, INK, HPos::Left, VPos::Top),
    ))?;
    Ok(())
}

/// A small grey footnote line at `y`.
pub(crate) fn draw_note(root: &Root, note: &str, y: i32) -> Drawn {
    root.draw(&Text::new(
        clean(note),
        (16, y),
        italic(11.0, MUTED, HPos::Left, VPos::Center),
    ))?;
    Ok(())
}

/// Legend swatch kinds.
pub(crate) enum Swatch {
    Line(RGBColor),
    Dashed(RGBColor, u32),
    Dot(RGBColor),
    Diamond(RGBColor),
    Ring(RGBColor),
}

/// Draw a one-line legend starting at (x, y); returns the x after the last item.
pub(crate) fn draw_legend(
    root: &Root,
    mut x: i32,
    y: i32,
    items: &[(Swatch, &str)],
) -> Result<i32, Box<dyn std::error::Error>> {
    for (swatch, label) in items {
        match swatch {
            Swatch::Line(c) => {
                root.draw(&PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    ShapeStyle::from(*c).stroke_width(2),
                ))?;
                x += 24;
            }
            Swatch::Dashed(c, w) => {
                dashed(root, (x, y), (x + 18, y), *c, *w)?;
                x += 24;
            }
            Swatch::Dot(c) => {
                root.draw(&Circle::new((x + 5, y), 5, c.filled()))?;
                x += 14;
            }
            Swatch::Diamond(c) => {
                diamond(root, (x + 6, y), 6, *c)?;
                x += 16;
            }
            Swatch::Ring(c) => {
                root.draw(&Circle::new(
                    (x + 6, y),
                    6,
                    ShapeStyle::from(*c).stroke_width(2),
                ))?;
                x += 16;
            }
        }
        root.draw(&Text::new(
            clean(label),
            (x, y),
            text(11.0, INK, HPos::Left, VPos::Center),
        ))?;
        x += (text_width(label, 11.0) * 0.88) as i32 + 18;
    }
    Ok(x)
}

pub(crate) fn diamond(root: &Root, c: (i32, i32), r: i32, color: RGBColor) -> Drawn {
    let pts = vec![
        (c.0, c.1 - r),
        (c.0 + r, c.1),
        (c.0, c.1 + r),
        (c.0 - r, c.1),
    ];
    root.draw(&Polygon::new(pts.clone(), color.filled()))?;
    let mut outline = pts;
    outline.push((c.0, c.1 - r));
    root.draw(&PathElement::new(
        outline,
        ShapeStyle::from(WHITE).stroke_width(1),
    ))?;
    Ok(())
}

/// Render with plotters into a string, then post-process it into the final
/// document (see [`finish`]). Falls back to a message chart if drawing fails.
pub(crate) fn render(title: &str, w: u32, h: u32, draw: impl FnOnce(&Root) -> Drawn) -> String {
    let mut buf = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        let r = root
            .fill(&WHITE)
            .map_err(Into::into)
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(Into::into));
        drop(root);
        r
    };
    match result {
        Ok(()) => finish(&buf, title, w, h),
        Err(e) => message_chart(title, &format!("chart could not be drawn: {e}"), w, 200),
    }
}

/// A valid chart that only shows a title and a centred message
/// ("no data", …). Never fails.
pub(crate) fn message_chart(title: &str, message: &str, w: u32, h: u32) -> String {
    let mut buf = String::new();
    let ok = {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        let r = root.fill(&WHITE).is_ok()
            && draw_title(&root, title, w).is_ok()
            && root
                .draw(&Text::new(
                    truncate(&clean(message), 100),
                    (w as i32 / 2, h as i32 / 2 + 10),
                    italic(14.0, MUTED, HPos::Center, VPos::Center),
                ))
                .is_ok()
            && root.present().is_ok();
        drop(root);
        r
    };
    if ok {
        return finish(&buf, title, w, h);
    }
    let mut out = String::new();
    open_svg(&mut out, title, w, h);
    out.push_str("<text x=\"16\" y=\"40\">");
    escape_xml(message, &mut out);
    out.push_str("</text>\n</svg>\n");
    out
}

fn open_svg(out: &mut String, title: &str, w: u32, h: u32) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" \
         style=\"max-width:{w}px;height:auto\" role=\"img\" font-family=\"sans-serif\">\n<title>"
    );
    escape_xml(&clean(title), out);
    out.push_str("</title>\n");
}

/// Replace plotters' fixed-size root tag with a responsive one (viewBox,
/// width="100%", capped at the natural width), add an accessible `<title>`,
/// and tidy the font sizes plotters prints with 15 decimals.
pub(crate) fn finish(raw: &str, title: &str, w: u32, h: u32) -> String {
    let body = match raw.split_once('\n') {
        Some((first, rest)) if first.starts_with("<svg") => rest,
        _ => raw,
    };
    let mut out = String::with_capacity(raw.len() + 256);
    open_svg(&mut out, title, w, h);
    const KEY: &str = "font-size=\"";
    let mut rest = body;
    while let Some(i) = rest.find(KEY) {
        let (head, tail) = rest.split_at(i + KEY.len());
        out.push_str(head);
        let end = tail.find('"').unwrap_or(tail.len());
        match tail[..end].parse::<f64>() {
            Ok(v) if v.is_finite() => out.push_str(&fmt_num((v * 100.0).round() / 100.0)),
            _ => out.push_str("12"),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
