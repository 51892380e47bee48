//! An SVG bar chart comparing servers: DTPB, trajectories per second and cache efficiency,
//! one panel each, bars grouped by workload and coloured by server.

use crate::outcome::RunResult;
use std::fmt::Write;

const COLORS: &[&str] = &[
    "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#e53e3e", "#718096",
];
const PANEL_W: f64 = 360.0;
const PANEL_H: f64 = 260.0;
const MARGIN: f64 = 40.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn svg(runs: &[RunResult]) -> String {
    let mut servers: Vec<&str> = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for r in runs {
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    type Panel = (&'static str, fn(&RunResult) -> f64);
    let panels: [Panel; 3] = [
        ("DTPB (distinct trajectories / 1M computed tokens)", |r| {
            r.summary.dtpb
        }),
        ("trajectories per second", |r| r.summary.trajectories_per_s),
        ("cache efficiency (limit / computed)", |r| {
            r.summary.cache_efficiency.unwrap_or(0.0)
        }),
    ];
    let width = MARGIN + panels.len() as f64 * (PANEL_W + MARGIN);
    let height = PANEL_H + 2.0 * MARGIN + 20.0 * servers.len() as f64 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (p, (title, value)) in panels.iter().enumerate() {
        let x0 = MARGIN + p as f64 * (PANEL_W + MARGIN);
        let y0 = MARGIN;
        let max = runs.iter().map(value).fold(0.0f64, f64::max).max(1e-9);
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="12" font-weight="bold">{}</text>"#,
            y0 - 12.0,
            escape(title)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
            y0 + PANEL_H,
            x0 + PANEL_W,
            y0 + PANEL_H
        );
        let group_w = PANEL_W / workloads.len().max(1) as f64;
        let bar_w = (group_w * 0.8) / servers.len().max(1) as f64;
        for (g, w) in workloads.iter().enumerate() {
            let gx = x0 + g as f64 * group_w + group_w * 0.1;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                gx + group_w * 0.4,
                y0 + PANEL_H + 14.0,
                escape(w)
            );
            for (k, server) in servers.iter().enumerate() {
                let Some(r) = runs
                    .iter()
                    .find(|r| r.server == *server && r.workload == *w)
                else {
                    continue;
                };
                let v = value(r);
                let h = v / max * (PANEL_H - 20.0);
                let x = gx + k as f64 * bar_w;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {v:.3}</title></rect>"#,
                    y0 + PANEL_H - h,
                    bar_w * 0.9,
                    COLORS[k % COLORS.len()],
                    escape(server)
                );
                let label = if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                };
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{label}</text>"#,
                    x + bar_w * 0.45,
                    y0 + PANEL_H - h - 3.0
                );
            }
        }
    }
    for (k, server) in servers.iter().enumerate() {
        let y = PANEL_H + 2.0 * MARGIN + 20.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{MARGIN}" y="{}" width="12" height="12" fill="{}"/>"#,
            y - 10.0,
            COLORS[k % COLORS.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y}">{}</text>"#,
            MARGIN + 18.0,
            escape(server)
        );
    }
    s.push_str("</svg>\n");
    s
}
