//! The compliance report as one self-contained HTML page for a board report: the tables, the
//! notes and three inline SVG charts (share met per unit and kind against the 100 % line, the
//! monthly trend per kind, girls against boys), with print styles for A4. No script, no font,
//! no image or style sheet from elsewhere: the page works offline and prints as it shows.
//!
//! The charts are drawn from the report's own table, as the one suppression decided it: each
//! bar or point is a group of the table, or a sum of groups that are all shown
//! ([`Table::sum_shown`]); a bar that would take in a hidden group is a "< N" or "*" label, with
//! no length. A chart needs its dimensions in `--by` (unit; month; sex — per kind when `kind` is
//! there too); without them the page says which `--by` draws it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::render::{self, percent, Words};
use super::{months, Dimension, Disclosure, Group, Report, Table, Tally};
use crate::rules::Kind;

const GIRLS: &str = "#9b4f96";
const BOYS: &str = "#2f7fb8";
const CHART_WIDTH: f64 = 680.0;

/// The page. `unit_names` gives configured units their names beside the code.
pub fn page(report: &Report, w: &Words, unit_names: &BTreeMap<String, String>) -> String {
    let r = &report.request;
    let mut h = String::with_capacity(32 * 1024);
    let lang = w.lang.code();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}{}</style>\n</head>\n<body>\n",
        esc(&w.title_line(report)),
        page_margins(report, w),
    );
    let _ = write!(h, "<header><h1>{}</h1>", esc(&w.title()));
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} <strong>{}</strong> – <strong>{}</strong> · {} {} · {}</p></header>",
        esc(&w.text("report.deadlines_with_their_last")),
        r.period.from,
        r.period.to,
        esc(&w.text("report.as_of")),
        r.today,
        esc(&w.text("report.source_fristvakt")),
    );
    if !r.suppress {
        let _ = writeln!(h, "<p class=\"warning\">{}</p>", esc(&w.suppression_line(report)));
    }
    // The totals row's figures as the suppression left them.
    let totals = &report.table.totals;
    let hidden = if totals.visible().is_none() { format!("< {}", r.min_group) } else { "*".into() };
    let outcomes = totals.outcomes();
    let _ = write!(h, "<section class=\"keyfigures\">");
    for (label, value) in [
        (w.text("report.deadlines"), totals.visible().map(|t| t.tally.total.to_string())),
        (w.text("report.share_met"), outcomes.map(|t| percent(t.tally.share_met(), w))),
        (w.text("report.against_nominal_day"), outcomes.map(|t| percent(t.tally.share_met_nominal(), w))),
        (w.text("report.overdue_now"), outcomes.map(|t| t.tally.overdue.to_string())),
    ] {
        let value = value.unwrap_or_else(|| hidden.clone());
        let _ = write!(
            h,
            "<div><span class=\"value\">{}</span><span class=\"label\">{}</span></div>",
            esc(&value),
            esc(&label)
        );
    }
    let _ = writeln!(h, "</section>");

    let _ = write!(h, "<section><h2>{}</h2>", esc(&w.text("report.share_met_by_unit")));
    h.push_str(&unit_kind_chart(&report.table, w, r.min_group, unit_names));
    let _ = write!(h, "</section>\n<section><h2>{}</h2>", esc(&w.text("report.monthly_trend_by_kind")));
    h.push_str(&trend_chart(&report.table, &months(r.period), w));
    let _ = write!(h, "</section>\n<section><h2>{}</h2>", esc(&w.text("report.girls_and_boys")));
    h.push_str(&sex_chart(&report.table, w, r.min_group));
    let _ = writeln!(h, "</section>");

    let _ = write!(h, "<section class=\"table\"><h2>{}</h2>", esc(&w.text("report.table")));
    h.push_str(&html_table(report, w, unit_names));
    let _ =
        write!(h, "</section>\n<section class=\"notes\"><h2>{}</h2><ul>", esc(&w.text("report.reading_the_figures")));
    for line in render::note_lines(report, w) {
        let _ = write!(h, "<li>{}</li>", esc(&line));
    }
    let _ = write!(h, "</ul></section>\n</body>\n</html>\n");
    h
}

/// The printed page's running header (the title and the period) and its page numbers, in the
/// page margins (CSS paged media, which Chromium prints).
fn page_margins(report: &Report, w: &Words) -> String {
    // A CSS string: quotes and backslashes escaped, no line breaks; `<` cannot end the style
    // element as `\3C`.
    let css = |text: &str| -> String {
        text.chars()
            .map(|c| match c {
                '"' | '\\' => format!("\\{c}"),
                '<' => "\\3C ".to_string(),
                c if c.is_control() => " ".to_string(),
                c => c.to_string(),
            })
            .collect()
    };
    let r = &report.request;
    let header = css(&format!("{} {} – {}", w.title(), r.period.from, r.period.to));
    let (page, of) = (w.text("report.page"), w.text("report.page_of"));
    format!(
        "\n@page {{ @top-left {{ content: \"{header}\"; font-size: 9px; color: #4a5663; }} \
         @top-right {{ content: \"fristvakt\"; font-size: 9px; color: #4a5663; }} \
         @bottom-right {{ content: \"{page}\" counter(page) \"{of}\" counter(pages); font-size: 9px; color: #4a5663; }} }}\n"
    )
}

const STYLE: &str = "
@page { size: A4 portrait; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: 'Segoe UI', 'Liberation Sans', Arial, sans-serif; color: #1d2733; margin: 0 auto; max-width: 760px; padding: 24px 16px; line-height: 1.4; font-size: 14px; }
header { border-bottom: 3px solid #1b6b93; margin-bottom: 12px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 18px 0 6px; color: #1b4e6b; }
.meta { color: #4a5663; margin: 0 0 8px; }
.warning { background: #fdecea; border: 2px solid #b3261e; color: #7a1712; padding: 8px 12px; font-weight: bold; }
.keyfigures { display: flex; gap: 10px; margin: 10px 0 4px; }
.keyfigures div { flex: 1; background: #f1f5f8; border-radius: 6px; padding: 8px 10px; }
.keyfigures .value { display: block; font-size: 22px; font-weight: bold; }
.keyfigures .label { color: #4a5663; font-size: 12px; }
section { break-inside: avoid; page-break-inside: avoid; }
section.table, section.notes { break-inside: auto; page-break-inside: auto; }
svg { display: block; max-width: 100%; height: auto; }
svg { font-family: inherit; }
table { border-collapse: collapse; width: 100%; font-size: 12px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 6px; border-bottom: 1px solid #d5dde4; }
th { background: #e7eef3; text-align: left; vertical-align: bottom; }
td.n, th.n { text-align: right; }
td { white-space: nowrap; }
.units { font-size: 11px; color: #4a5663; }
tr.total td { font-weight: bold; border-top: 2px solid #1d2733; }
tr.hidden td { color: #6b7783; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
.notes li { margin-bottom: 4px; }
.nochart { color: #4a5663; font-style: italic; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  .keyfigures div { border: 1px solid #c9d3dc; }
  /* A chart is one block that cannot break: scaled to fit below the key figures, so that the
     first page is not left blank and the chart not pushed to the next. */
  svg { width: auto; max-width: 100%; max-height: 205mm; margin: 0 auto; }
  h2 { break-after: avoid; page-break-after: avoid; }
  /* The units' names stay with the table's last rows. */
  p.units { break-before: avoid; page-break-before: avoid; }
}
";

fn html_table(report: &Report, w: &Words, unit_names: &BTreeMap<String, String>) -> String {
    let table = &report.table;
    let mut h = String::from("<table><thead><tr>");
    for d in &table.by {
        let _ = write!(h, "<th>{}</th>", esc(&w.dimension(*d)));
    }
    for head in w.figure_heads() {
        let _ = write!(h, "<th class=\"n\">{}</th>", esc(&head));
    }
    if table.chains {
        let _ = write!(h, "<th class=\"n\">{}</th>", esc(&w.chain_head()));
    }
    h.push_str("</tr></thead><tbody>");
    for g in &table.groups {
        let _ = write!(h, "<tr{}>", if g.visible().is_none() { " class=\"hidden\"" } else { "" });
        for (d, v) in table.by.iter().zip(&g.key) {
            let _ = write!(h, "<td>{}</td>", esc(&w.value(*d, v)));
        }
        for f in w.figures(g, report.request.min_group) {
            let _ = write!(h, "<td class=\"n\">{}</td>", esc(&f));
        }
        if table.chains {
            let _ = write!(h, "<td class=\"n\">{}</td>", esc(&w.chained(g, false)));
        }
        h.push_str("</tr>");
    }
    h.push_str("<tr class=\"total\">");
    for i in 0..table.by.len() {
        let _ = write!(h, "<td>{}</td>", if i == 0 { esc(&w.totals()) } else { String::new() });
    }
    for f in w.figures(&table.totals, report.request.min_group) {
        let _ = write!(h, "<td class=\"n\">{}</td>", esc(&f));
    }
    if table.chains {
        let _ = write!(h, "<td class=\"n\">{}</td>", esc(&w.chained(&table.totals, true)));
    }
    h.push_str("</tr></tbody></table>");
    // The names of the units in the table, once, below it.
    let named: Vec<String> = table
        .groups
        .iter()
        .filter_map(|g| g.value(&table.by, Dimension::Unit))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|code| Some(format!("<b>{}</b> {}", esc(code), esc(unit_names.get(code)?))))
        .collect();
    if !named.is_empty() {
        let _ = write!(h, "<p class=\"units\">{}</p>", named.join(" · "));
    }
    h
}

/// What a chart draws for a set of the table's groups.
enum Bar {
    /// No group: "none".
    Empty,
    /// A hidden group among them: its label ("< N" for a lone small group, else "*"), no length.
    Hidden(String),
    Shown(Tally),
}

fn bar(t: &Table, pred: impl Fn(&Group) -> bool, min_group: u64) -> Bar {
    let matching: Vec<&Group> = t.groups.iter().filter(|g| pred(g)).collect();
    match (matching.as_slice(), t.sum_shown(&pred)) {
        ([], _) => Bar::Empty,
        (_, Some(tally)) => Bar::Shown(tally),
        ([one], None) if one.disclosure == Disclosure::SmallGroup => Bar::Hidden(format!("< {min_group}")),
        (_, None) => Bar::Hidden("*".into()),
    }
}

/// The series of a chart: one per kind when `kind` is in the grouping, else all kinds as one.
fn series(t: &Table, w: &Words) -> Vec<(Option<Kind>, &'static str, String)> {
    if t.by.contains(&Dimension::Kind) {
        Kind::ALL.iter().map(|k| (Some(*k), k.clock().colour, w.kind(*k))).collect()
    } else {
        vec![(None, Kind::Protection.clock().colour, w.text("report.all_deadlines"))]
    }
}

fn of_kind(t: &Table, g: &Group, kind: Option<Kind>) -> bool {
    kind.is_none_or(|k| g.value(&t.by, Dimension::Kind) == Some(k.as_str()))
}

/// In place of a chart whose dimension is not in the grouping: which `--by` draws it.
fn no_chart(w: &Words, by: &str) -> String {
    format!("<p class=\"nochart\">{}</p>", esc(&w.fill("report.no_chart", &[("by", &by)])))
}

/// Horizontal bars: one cluster per unit, one bar per kind, 0–100 % with the 100 % line.
fn unit_kind_chart(t: &Table, w: &Words, min_group: u64, unit_names: &BTreeMap<String, String>) -> String {
    if !t.by.contains(&Dimension::Unit) {
        return no_chart(w, "unit");
    }
    let units: Vec<&str> = t
        .groups
        .iter()
        .filter_map(|g| g.value(&t.by, Dimension::Unit))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let series = series(t, w);
    // Room on the left for the unit's name (its code below it).
    let named = units.iter().any(|u| unit_names.contains_key(*u));
    let (left, right, bar_h, gap) = (if named { 190.0 } else { 110.0 }, 60.0, 12.0, 10.0);
    let plot = CHART_WIDTH - left - right;
    let cluster = bar_h * series.len() as f64 + gap;
    let items: Vec<(&str, String)> = series.iter().map(|(_, c, l)| (*c, l.clone())).collect();
    let top = legend_top(left, &items);
    let height = top + cluster * units.len().max(1) as f64 + 30.0;
    let mut s = svg_open(height, &w.text("report.chart_by_unit"));
    legend(&mut s, left, 14.0, &items);
    for (ui, unit) in units.iter().enumerate() {
        let y0 = top + ui as f64 * cluster;
        match unit_names.get(*unit) {
            Some(name) => {
                // Long names shortened to the room they have (about 30 characters).
                let shown: String = if name.chars().count() > 30 {
                    name.chars().take(29).chain(['…']).collect()
                } else {
                    name.clone()
                };
                let _ = write!(
                    s,
                    "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
                     <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"9\" fill=\"#4a5663\">{}</text>",
                    y0 + cluster / 2.0 - 4.0,
                    esc(&shown),
                    y0 + cluster / 2.0 + 8.0,
                    esc(unit),
                    x = left - 6.0,
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                    left - 6.0,
                    y0 + cluster / 2.0,
                    esc(unit)
                );
            }
        }
        for (ki, (kind, colour, _)) in series.iter().enumerate() {
            let y = y0 + ki as f64 * bar_h;
            let b = bar(t, |g| g.value(&t.by, Dimension::Unit) == Some(unit) && of_kind(t, g, *kind), min_group);
            bar_or_label(&mut s, &b, left, y, bar_h - 2.0, plot, colour, w);
        }
    }
    hundred_line(&mut s, left, plot, top - 4.0, top + cluster * units.len().max(1) as f64, w);
    axis(&mut s, left, plot, top + cluster * units.len().max(1) as f64 + 14.0);
    s.push_str("</svg>");
    s
}

/// Lines: the share met per month, one line per kind, with the 100 % line.
fn trend_chart(t: &Table, months: &[String], w: &Words) -> String {
    if !t.by.contains(&Dimension::Month) {
        return no_chart(w, "month");
    }
    let series = series(t, w);
    let (left, right, plot_h) = (44.0, 36.0, 170.0);
    let items: Vec<(&str, String)> = series.iter().map(|(_, c, l)| (*c, l.clone())).collect();
    let top = legend_top(left, &items);
    let plot = CHART_WIDTH - left - right;
    let height = top + plot_h + 40.0;
    let mut s = svg_open(height, &w.text("report.chart_by_month"));
    legend(&mut s, left, 14.0, &items);
    let y_of = |share: f64| top + plot_h * (1.0 - share);
    for pct in [0, 25, 50, 75, 100] {
        let y = y_of(pct as f64 / 100.0);
        let stroke = if pct == 100 { "stroke=\"#b3261e\" stroke-dasharray=\"5 3\"" } else { "stroke=\"#d5dde4\"" };
        let _ = write!(s, "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" {stroke}/>", left + plot);
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pct} %</text>", left - 4.0, y + 4.0);
    }
    let step = if months.len() > 1 { plot / (months.len() - 1) as f64 } else { 0.0 };
    let x_of = |i: usize| if months.len() > 1 { left + step * i as f64 } else { left + plot / 2.0 };
    let every = months.len().div_ceil(12).max(1);
    for (i, m) in months.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x_of(i),
                top + plot_h + 16.0,
                esc(m)
            );
        }
    }
    for (kind, colour, _) in &series {
        let points: Vec<(f64, f64)> = months
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let Bar::Shown(tally) =
                    bar(t, |g| g.value(&t.by, Dimension::Month) == Some(m) && of_kind(t, g, *kind), 0)
                else {
                    return None;
                };
                Some((x_of(i), y_of(tally.share_met()?)))
            })
            .collect();
        if points.len() > 1 {
            let path: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        for (x, y) in points {
            let _ = write!(s, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"/>");
        }
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
        left,
        height - 4.0,
        esc(&w.text("report.months_with_too_few"))
    );
    s.push_str("</svg>");
    s
}

/// Bars: girls against boys per kind.
fn sex_chart(t: &Table, w: &Words, min_group: u64) -> String {
    if !t.by.contains(&Dimension::Sex) {
        return no_chart(w, "sex");
    }
    let series = series(t, w);
    let (left, right, bar_h, gap, top) = (170.0, 60.0, 14.0, 12.0, 30.0);
    let plot = CHART_WIDTH - left - right;
    let cluster = bar_h * 2.0 + gap;
    let height = top + cluster * series.len() as f64 + 30.0;
    let mut s = svg_open(height, &w.text("report.chart_by_sex"));
    legend(&mut s, left, 14.0, &[(GIRLS, w.text("report.girls")), (BOYS, w.text("report.boys"))]);
    for (ki, (kind, _, label)) in series.iter().enumerate() {
        let y0 = top + ki as f64 * cluster;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y0 + bar_h + 2.0,
            esc(label)
        );
        for (si, (code, colour)) in [("F", GIRLS), ("M", BOYS)].iter().enumerate() {
            let b = bar(t, |g| g.value(&t.by, Dimension::Sex) == Some(code) && of_kind(t, g, *kind), min_group);
            bar_or_label(&mut s, &b, left, y0 + si as f64 * bar_h, bar_h - 2.0, plot, colour, w);
        }
    }
    let bottom = top + cluster * series.len() as f64;
    hundred_line(&mut s, left, plot, top - 4.0, bottom, w);
    axis(&mut s, left, plot, bottom + 14.0);
    s.push_str("</svg>");
    s
}

fn svg_open(height: f64, title: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {CHART_WIDTH} {height:.0}\" font-size=\"11\" fill=\"#1d2733\" width=\"{CHART_WIDTH}\" height=\"{height:.0}\" role=\"img\"><title>{}</title>",
        esc(title)
    )
}

#[allow(clippy::too_many_arguments)]
fn bar_or_label(s: &mut String, b: &Bar, left: f64, y: f64, h: f64, plot: f64, colour: &str, w: &Words) {
    let label = match b {
        Bar::Empty => w.text("report.none"),
        Bar::Hidden(label) => label.clone(),
        // Deadlines counted, none closed or past due yet: the slot says so.
        Bar::Shown(tally) if tally.share_met().is_none() => {
            format!("{} (n={})", w.text("report.no_outcome_yet"), tally.total)
        }
        Bar::Shown(tally) => {
            let Some(share) = tally.share_met() else { return };
            let width = (plot * share).max(1.0);
            let _ =
                write!(s, "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"{colour}\"/>");
            let label = esc(&format!("{} (n={})", percent(Some(share), w), tally.total));
            // Inside the end of a long bar (white), after a short one: never across the 100 % line.
            let (x, anchor, fill) = if width > 110.0 {
                (left + width - 4.0, "end", "#ffffff")
            } else {
                (left + width + 4.0, "start", "#1d2733")
            };
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"{anchor}\" fill=\"{fill}\">{label}</text>",
                y + h - 2.0
            );
            return;
        }
    };
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#6b7783\">{}</text>",
        left + 4.0,
        y + h - 2.0,
        esc(&label)
    );
}

fn hundred_line(s: &mut String, left: f64, plot: f64, y1: f64, y2: f64, w: &Words) {
    let x = left + plot;
    let _ = write!(s, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y1:.1}\" y2=\"{y2:.1}\" stroke=\"#b3261e\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>");
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#b3261e\">{}</text>",
        x - 2.0,
        y1 - 2.0,
        esc(&w.text("report.all_met"))
    );
}

fn axis(s: &mut String, left: f64, plot: f64, y: f64) {
    for pct in [0, 25, 50, 75, 100] {
        let x = left + plot * pct as f64 / 100.0;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9aa5b1\"/>",
            y - 14.0,
            y - 10.0
        );
        let _ = write!(s, "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{pct} %</text>");
    }
}

/// The legend, from `x` on, in as many rows as the chart's width needs (every kind named in
/// full, however many kinds there are).
fn legend(s: &mut String, x: f64, y: f64, items: &[(&str, String)]) {
    for ((ix, iy), (colour, label)) in legend_places(x, y, items).into_iter().zip(items) {
        let _ = write!(s, "<rect x=\"{ix:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>", iy - 9.0);
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{iy:.1}\">{}</text>", ix + 14.0, esc(label));
    }
}

/// Where each legend item goes: a new row when the next would pass the chart's right edge.
fn legend_places(x0: f64, y0: f64, items: &[(&str, String)]) -> Vec<(f64, f64)> {
    let (mut x, mut y) = (x0, y0);
    let mut places = Vec::with_capacity(items.len());
    for (_, label) in items {
        let width = 24.0 + 6.5 * label.chars().count() as f64;
        if x > x0 && x + width > CHART_WIDTH {
            (x, y) = (x0, y + LEGEND_ROW);
        }
        places.push((x, y));
        x += width;
    }
    places
}

const LEGEND_ROW: f64 = 14.0;

/// The top of a chart's plot below its legend (one row: 30).
fn legend_top(x: f64, items: &[(&str, String)]) -> f64 {
    let last = legend_places(x, 14.0, items).last().map_or(14.0, |(_, y)| *y);
    last + 16.0
}

/// Text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
