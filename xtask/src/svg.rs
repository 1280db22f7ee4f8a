//! Simple SVG charts for the benchmark reports, with no dependencies.
//!
//! Each chart function returns a complete `<svg>` element (usable alone as a
//! file); [`page`] stacks several of them into one SVG document. Text uses the
//! generic `sans-serif` family, so no font is fetched or embedded.
#![allow(dead_code)]

use std::fmt::Write;

/// One named data series. For [`line_chart`], points are (x, y); for
/// [`bar_chart`], x is the category index (0, 1, ...) and y the bar height.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points }
    }
}

/// Chart size in pixels (each chart; `page` stacks them vertically).
pub const WIDTH: f64 = 760.0;
pub const HEIGHT: f64 = 420.0;
/// Plot area margins: room for the title, tick labels, axis labels, legend.
const LEFT: f64 = 78.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 64.0;

/// Tableau 10: distinct, colour-blind-friendlier than the primaries.
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Colour of series `i`.
pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// `s` with XML's special characters escaped (for text and attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A number formatted compactly, for coordinates.
fn px(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// "Nice" axis ticks covering `[lo, hi]`: about `target` steps of 1, 2 or 5
/// times a power of ten. Returns (ticks, step); the first tick is <= lo and
/// the last >= hi.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    nice_ticks_min_step(lo, hi, target, 0.0)
}

/// As [`nice_ticks`], with a step of at least `min_step` (1 for integer data
/// such as thread counts).
fn nice_ticks_min_step(lo: f64, hi: f64, target: usize, min_step: f64) -> (Vec<f64>, f64) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() { (lo.min(hi), lo.max(hi)) } else { (0.0, 1.0) };
    if hi - lo < f64::EPSILON * hi.abs().max(1.0) {
        // Degenerate range: widen around the value (down to 0 if it is >= 0).
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.5 };
        lo = if lo >= 0.0 { (lo - pad).max(0.0) } else { lo - pad };
        hi += pad;
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw * 0.999).unwrap_or(10.0 * mag);
    let step = step.max(min_step);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let n = ((last - first) as usize).clamp(1, 1000);
    let ticks = (0..=n).map(|i| (first + i as f64) * step).map(|t| if t.abs() < step * 1e-9 { 0.0 } else { t }).collect();
    (ticks, step)
}

/// A tick label: as many decimals as the step needs, SI suffixes from 10^4.
pub fn tick_label(v: f64, step: f64) -> String {
    let a = v.abs();
    let (scaled, scaled_step, suffix) = if a >= 1e9 || step >= 1e9 {
        (v / 1e9, step / 1e9, "G")
    } else if a >= 1e6 || step >= 1e6 {
        (v / 1e6, step / 1e6, "M")
    } else if a >= 1e4 && step >= 1e3 {
        (v / 1e3, step / 1e3, "k")
    } else {
        (v, step, "")
    };
    // As many decimals as make the step a whole number (0.5: 1, 0.25: 2).
    let mut decimals = 0;
    let mut st = scaled_step.abs();
    while decimals < 9 && st > 0.0 && (st - st.round()).abs() > 1e-6 * st.max(1.0) {
        st *= 10.0;
        decimals += 1;
    }
    let s = format!("{scaled:.decimals$}");
    let s = if s == "-0" { "0".to_string() } else { s };
    format!("{s}{suffix}")
}

/// Linear map from data to pixels.
#[derive(Clone, Copy)]
struct Scale {
    d0: f64,
    d1: f64,
    p0: f64,
    p1: f64,
}

impl Scale {
    fn map(&self, v: f64) -> f64 {
        if self.d1 == self.d0 {
            return (self.p0 + self.p1) / 2.0;
        }
        self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)
    }
}

/// The `<svg>` start tag, background and title of a chart.
fn open_chart(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
        w = px(WIDTH),
        h = px(HEIGHT)
    );
    let _ = write!(out, r#"<rect x="0" y="0" width="{}" height="{}" fill="white"/>"#, px(WIDTH), px(HEIGHT));
    let _ = write!(
        out,
        r#"<text x="{}" y="26" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        px(LEFT + (WIDTH - LEFT - RIGHT) / 2.0),
        escape(title)
    );
}

/// Horizontal grid lines, y ticks with labels, the y axis label.
fn y_axis(out: &mut String, ys: &Scale, ticks: &[f64], step: f64, y_label: &str) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    for &t in ticks {
        let y = ys.map(t);
        let _ = write!(out, r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#e0e0e0"/>"##, px(x0), px(x1), y = px(y));
        let _ = write!(out, r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#333"/>"##, px(x0 - 5.0), px(x0), y = px(y));
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            px(x0 - 8.0),
            px(y + 4.0),
            escape(&tick_label(t, step))
        );
    }
    let cy = (TOP + HEIGHT - BOTTOM) / 2.0;
    let _ = write!(
        out,
        r#"<text x="18" y="{cy}" text-anchor="middle" transform="rotate(-90 18 {cy})">{}</text>"#,
        escape(y_label),
        cy = px(cy)
    );
}

/// The plot frame (left and bottom axes) and the x axis label.
fn frame(out: &mut String, x_label: &str) {
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let _ = write!(
        out,
        r##"<path d="M{} {} L{} {} L{} {}" fill="none" stroke="#333"/>"##,
        px(x0),
        px(y1),
        px(x0),
        px(y0),
        px(x1),
        px(y0)
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        px((x0 + x1) / 2.0),
        px(HEIGHT - 14.0),
        escape(x_label)
    );
}

/// Legend to the right of the plot: a swatch and the name of each series.
fn legend(out: &mut String, series: &[Series], line: bool) {
    let x = WIDTH - RIGHT + 16.0;
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 8.0 + i as f64 * 20.0;
        if line {
            let _ = write!(
                out,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2.5"/><circle cx="{}" cy="{y}" r="3" fill="{c}"/>"#,
                px(x),
                px(x + 22.0),
                px(x + 11.0),
                y = px(y),
                c = color(i)
            );
        } else {
            let _ = write!(out, r#"<rect x="{}" y="{}" width="14" height="12" fill="{}"/>"#, px(x + 4.0), px(y - 6.0), color(i));
        }
        let name: String = s.name.chars().take(22).collect();
        let name = if s.name.chars().count() > 22 { format!("{name}…") } else { name };
        let _ = write!(out, r#"<text x="{}" y="{}">{}</text>"#, px(x + 28.0), px(y + 4.0), escape(&name));
    }
}

/// Finite points only.
fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// The y range to show: the data's, widened to include 0 when all values
/// have one sign (so bars and lines are not exaggerated).
fn y_range(series: &[Series]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for (_, y) in finite(&s.points) {
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    (lo.min(0.0), hi.max(0.0))
}

/// A line chart of `series` (points sorted by x when drawn), with numeric x
/// and y axes, grid, point markers and a legend.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let mut out = String::new();
    open_chart(&mut out, title);

    let (mut xlo, mut xhi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for (x, _) in finite(&s.points) {
            xlo = xlo.min(x);
            xhi = xhi.max(x);
        }
    }
    if xlo > xhi {
        (xlo, xhi) = (0.0, 1.0);
    }
    // Integer x data (thread counts, sizes) gets integer ticks.
    let integral = series.iter().all(|s| finite(&s.points).all(|(x, _)| x == x.trunc()));
    let (xt, xstep) = nice_ticks_min_step(xlo, xhi, 8, if integral { 1.0 } else { 0.0 });
    let (ylo, yhi) = y_range(series);
    let (yt, ystep) = nice_ticks(ylo, yhi, 6);
    let xs = Scale { d0: xt[0], d1: *xt.last().unwrap(), p0: LEFT, p1: WIDTH - RIGHT };
    let ys = Scale { d0: yt[0], d1: *yt.last().unwrap(), p0: HEIGHT - BOTTOM, p1: TOP };

    y_axis(&mut out, &ys, &yt, ystep, y_label);
    for &t in &xt {
        let x = xs.map(t);
        let y0 = HEIGHT - BOTTOM;
        let _ = write!(out, r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#f0f0f0"/>"##, px(TOP), px(y0), x = px(x));
        let _ = write!(out, r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#333"/>"##, px(y0), px(y0 + 5.0), x = px(x));
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            px(y0 + 19.0),
            escape(&tick_label(t, xstep))
        );
    }
    frame(&mut out, x_label);

    for (i, s) in series.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = finite(&s.points).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let _ = write!(out, r#"<g><title>{}</title>"#, escape(&s.name));
        if pts.len() > 1 {
            let d: Vec<String> = pts.iter().map(|&(x, y)| format!("{},{}", px(xs.map(x)), px(ys.map(y)))).collect();
            let _ = write!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5" stroke-linejoin="round"/>"#,
                d.join(" "),
                color(i)
            );
        }
        for &(x, y) in &pts {
            let _ = write!(out, r#"<circle cx="{}" cy="{}" r="3.5" fill="{}"/>"#, px(xs.map(x)), px(ys.map(y)), color(i));
        }
        out.push_str("</g>");
    }
    legend(&mut out, series, true);
    out.push_str("</svg>");
    out
}

/// A grouped bar chart: one group per category, one bar per series in each
/// group (series point (i, y) is the bar for `categories[i]`; missing points
/// draw no bar). Value labels sit on top of the bars.
pub fn bar_chart(title: &str, x_label: &str, y_label: &str, categories: &[String], series: &[Series]) -> String {
    let mut out = String::new();
    open_chart(&mut out, title);

    let (ylo, yhi) = y_range(series);
    let (yt, ystep) = nice_ticks(ylo, yhi, 6);
    let ys = Scale { d0: yt[0], d1: *yt.last().unwrap(), p0: HEIGHT - BOTTOM, p1: TOP };
    y_axis(&mut out, &ys, &yt, ystep, y_label);

    let ncat = categories.len().max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let slot = plot_w / ncat as f64;
    let nser = series.len().max(1);
    let bar_w = (slot * 0.8 / nser as f64).max(1.0);
    let base = ys.map(0.0_f64.clamp(yt[0], *yt.last().unwrap()));
    let y0 = HEIGHT - BOTTOM;
    // Rotate category labels that would not fit their slot (~6.5 px per char).
    let rotate = categories.iter().any(|c| c.chars().count() as f64 * 6.5 > slot - 4.0);
    for (ci, cat) in categories.iter().enumerate() {
        let cx = LEFT + slot * (ci as f64 + 0.5);
        let _ = write!(out, r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#333"/>"##, px(y0), px(y0 + 5.0), x = px(cx));
        if rotate {
            let _ = write!(
                out,
                r#"<text x="{x}" y="{y}" text-anchor="end" transform="rotate(-30 {x} {y})">{}</text>"#,
                escape(cat),
                x = px(cx),
                y = px(y0 + 16.0)
            );
        } else {
            let _ = write!(out, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, px(cx), px(y0 + 19.0), escape(cat));
        }
    }
    frame(&mut out, x_label);

    for (si, s) in series.iter().enumerate() {
        let _ = write!(out, r#"<g fill="{}"><title>{}</title>"#, color(si), escape(&s.name));
        for (x, y) in finite(&s.points) {
            let ci = x.round();
            if ci < 0.0 || ci as usize >= categories.len() {
                continue;
            }
            let left = LEFT + slot * ci + slot * 0.1 + bar_w * si as f64;
            let top = ys.map(y);
            let (ry, rh) = if top < base { (top, base - top) } else { (base, top - base) };
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>"#,
                px(left),
                px(ry),
                px(bar_w),
                px(rh),
                escape(&s.name),
                escape(&value_label(y))
            );
            if bar_w >= 18.0 {
                let _ = write!(
                    out,
                    r##"<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="#333">{}</text>"##,
                    px(left + bar_w / 2.0),
                    px(ry - 3.0),
                    escape(&value_label(y))
                );
            }
        }
        out.push_str("</g>");
    }
    legend(&mut out, series, false);
    out.push_str("</svg>");
    out
}

/// A data value for a label: 3 significant digits, SI suffix from 10^4.
pub fn value_label(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    // Three significant digits, trailing zeros dropped.
    let ax = x.abs();
    let decimals = if ax >= 100.0 {
        0
    } else if ax >= 10.0 {
        1
    } else if ax >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let s = if s == "-0" { "0".to_string() } else { s };
    format!("{s}{suffix}")
}

/// The value of attribute `name` in the first tag of `svg` (a chart's size).
fn attr(svg: &str, name: &str) -> Option<f64> {
    let tag_end = svg.find('>')?;
    let tag = &svg[..tag_end];
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    tag[start..start + len].parse().ok()
}

/// One SVG document with `charts` stacked top to bottom (each chart is a
/// nested `<svg>` placed by a translated group).
pub fn page(charts: &[String]) -> String {
    let gap = 16.0;
    let mut y = 0.0;
    let mut width: f64 = 0.0;
    let mut body = String::new();
    for c in charts {
        let w = attr(c, "width").unwrap_or(WIDTH);
        let h = attr(c, "height").unwrap_or(HEIGHT);
        let _ = write!(body, r#"<g transform="translate(0 {})">{}</g>"#, px(y), c);
        y += h + gap;
        width = width.max(w);
    }
    let height = if charts.is_empty() { 0.0 } else { y - gap };
    let width = if charts.is_empty() { 0.0 } else { width };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>{body}</svg>\n",
        w = px(width),
        h = px(height)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that tags nest properly (a small XML well-formedness check:
    /// tags balanced, attributes quoted, no raw `<`/`&` in text) and returns
    /// the element names in document order.
    fn check_well_formed(doc: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = doc;
        if let Some(r) = rest.strip_prefix("<?xml") {
            rest = &r[r.find("?>").expect("unterminated XML declaration") + 2..];
        }
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            check_text(text);
            let gt = rest[lt..].find('>').expect("unterminated tag") + lt;
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "'<' inside tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().unwrap_or_else(|| panic!("close </{name}> without open"));
                assert_eq!(open, name.trim(), "mismatched close tag");
            } else {
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let name = body.split_whitespace().next().expect("empty tag").to_string();
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'), "bad name {name}");
                // Attributes: name="value" pairs, quotes balanced.
                assert_eq!(body.matches('"').count() % 2, 0, "unbalanced quotes in <{body}>");
                check_text(body);
                names.push(name.clone());
                if !self_closing {
                    stack.push(name);
                }
            }
            rest = &rest[gt + 1..];
        }
        check_text(rest);
        assert!(stack.is_empty(), "unclosed tags: {stack:?}");
        names
    }

    /// `&` only as one of the five entities.
    fn check_text(text: &str) {
        let mut t = text;
        while let Some(i) = t.find('&') {
            let ent = &t[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)),
                "raw '&' in {text:?}"
            );
            t = &t[i + 1..];
        }
        assert!(!text.contains('>') || text.is_empty() || !text.contains('<'));
    }

    fn demo_series() -> Vec<Series> {
        vec![
            Series::new("ticket", vec![(1.0, 34.0), (2.0, 190.5), (4.0, 410.0), (3.0, 300.0)]),
            Series::new("mcs <queue> & co", vec![(1.0, 74.0), (2.0, 350.0), (3.0, 420.0), (4.0, 500.0)]),
        ]
    }

    #[test]
    fn line_chart_is_well_formed_and_names_series() {
        let svg = line_chart("Contended \"locks\"", "threads", "cycles", &demo_series());
        let names = check_well_formed(&svg);
        assert_eq!(names[0], "svg");
        assert!(names.iter().any(|n| n == "polyline"));
        assert!(svg.contains(">ticket<"));
        assert!(svg.contains("mcs &lt;queue&gt; &amp; co"));
        assert!(svg.contains("Contended &quot;locks&quot;"));
        assert!(svg.contains(color(0)) && svg.contains(color(1)));
        // Axis numbers are there: y up to 500, integer x ticks 1..4.
        assert!(svg.contains(">500<"), "{svg}");
        assert!(svg.contains(">4<") && !svg.contains(">1.5<"), "{svg}");
    }

    #[test]
    fn bar_chart_is_well_formed_and_names_series() {
        let cats: Vec<String> = ["xadd", "ticket", "mcs", "spin_ticket", "parking_lot"].map(String::from).to_vec();
        let s = vec![
            Series::new("cycles", vec![(0.0, 12.0), (1.0, 12.3), (2.0, 25.0), (3.0, 12.2), (4.0, 26.0)]),
            Series::new("ratio", vec![(0.0, 1.0), (1.0, 1.02), (2.0, 2.1), (4.0, 2.2), (9.0, 1.0)]),
        ];
        let svg = bar_chart("Uncontended", "lock", "cycles", &cats, &s);
        let names = check_well_formed(&svg);
        assert_eq!(names.iter().filter(|n| *n == "rect").count(), 1 + 5 + 4 + 2); // bg + bars + legend
        for c in &cats {
            assert!(svg.contains(&format!(">{c}<")), "{c}");
        }
        assert!(svg.contains(">cycles<") && svg.contains(">ratio<"));
    }

    #[test]
    fn negative_bars_grow_down_from_zero() {
        let svg = bar_chart("t", "x", "y", &["a".into(), "b".into()], &[Series::new("s", vec![(0.0, -5.0), (1.0, 5.0)])]);
        check_well_formed(&svg);
        assert!(svg.contains(">-5<") || svg.contains(">-6<") || svg.contains(">-4<"));
    }

    #[test]
    fn page_stacks_charts() {
        let a = line_chart("A", "x", "y", &demo_series());
        let b = bar_chart("B", "x", "y", &["one".into()], &[Series::new("s", vec![(0.0, 1.0)])]);
        let p = page(&[a, b]);
        let names = check_well_formed(&p);
        assert_eq!(names.iter().filter(|n| *n == "svg").count(), 3);
        assert!(p.starts_with("<?xml"));
        assert!(p.contains(&format!("height=\"{}\"", px(2.0 * HEIGHT + 16.0))));
        assert!(p.contains("translate(0 436)"));
        check_well_formed(&page(&[]));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        for s in [
            vec![],
            vec![Series::new("empty", vec![])],
            vec![Series::new("one", vec![(3.0, 7.0)])],
            vec![Series::new("flat", vec![(1.0, 0.0), (2.0, 0.0)])],
            vec![Series::new("nan", vec![(f64::NAN, 1.0), (1.0, f64::INFINITY), (2.0, 2.0)])],
            vec![Series::new("huge", vec![(0.0, 3e9), (1e6, 5e9)])],
            vec![Series::new("tiny", vec![(0.0, 1e-6), (1.0, 3e-6)])],
        ] {
            check_well_formed(&line_chart("t", "x", "y", &s));
            check_well_formed(&bar_chart("t", "x", "y", &[], &s));
            check_well_formed(&bar_chart("t", "x", "y", &["a".into()], &s));
        }
        // Many series cycle the palette.
        let many: Vec<Series> = (0..12).map(|i| Series::new(format!("s{i}"), vec![(i as f64, i as f64)])).collect();
        check_well_formed(&line_chart("t", "x", "y", &many));
    }

    #[test]
    fn ticks_are_nice() {
        let (t, step) = nice_ticks(0.0, 97.0, 5);
        assert_eq!(step, 20.0);
        assert_eq!(t, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let (t, step) = nice_ticks(1.0, 16.0, 8);
        assert_eq!(step, 2.0);
        assert_eq!((t[0], *t.last().unwrap()), (0.0, 16.0));
        let (t, step) = nice_ticks(0.0, 2.2, 6);
        assert_eq!(step, 0.5);
        assert_eq!(*t.last().unwrap(), 2.5);
        let (t, step) = nice_ticks_min_step(1.0, 2.0, 8, 1.0);
        assert_eq!((step, t), (1.0, vec![1.0, 2.0]));
        let (t, _) = nice_ticks(5.0, 5.0, 5);
        assert!(t[0] <= 5.0 && *t.last().unwrap() >= 5.0 && t.len() >= 2);
        let (t, _) = nice_ticks(f64::NAN, 1.0, 5);
        assert!(t.len() >= 2);
    }

    #[test]
    fn labels() {
        assert_eq!(tick_label(0.5, 0.25), "0.50");
        assert_eq!(tick_label(40.0, 20.0), "40");
        assert_eq!(tick_label(1.5, 0.5), "1.5");
        assert_eq!(tick_label(20000.0, 5000.0), "20k");
        assert_eq!(tick_label(2.5e6, 5e5), "2.5M");
        assert_eq!(tick_label(-0.0, 1.0), "0");
        assert_eq!(tick_label(7.5, 2.5), "7.5");
        assert_eq!(value_label(6.6), "6.6");
        assert_eq!(value_label(6.0), "6");
        assert_eq!(value_label(12.345), "12.3");
        assert_eq!(value_label(2.0), "2");
        assert_eq!(value_label(1.0234), "1.02");
        assert_eq!(value_label(34567.0), "34.6k");
        assert_eq!(value_label(0.1234), "0.123");
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
