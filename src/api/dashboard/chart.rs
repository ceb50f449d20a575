//! Charts drawn on the server as inline SVG: no script, no library, no
//! network (SPEC §8: the machines may have no internet).
//!
//! A bar chart puts one bar per bucket that has anything on a time axis
//! spanning the whole range, so gaps show as gaps. Each bar carries
//! `data-bucket` (its start, RFC 3339) and `data-value`, which the browser
//! test compares with the API's buckets.

use maud::{Markup, html};

use crate::time::rfc3339;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
/// Room for the value labels on the left and the dates below.
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// What one bar chart shows.
#[derive(Debug)]
pub struct Series<'a> {
    /// Machine name (`data-chart`), also the CSS class of its bars.
    pub name: &'a str,
    /// The caption.
    pub title: &'a str,
    /// `[from_ms, to_ms)` and the bucket length.
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    /// (bucket start, value), oldest first; zero values are not drawn.
    pub points: Vec<(i64, u64)>,
}

/// An SVG bar chart of `series`.
pub fn bars(series: &Series<'_>) -> Markup {
    let span = (series.to_ms - series.from_ms).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max = series.points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let x = |ms: i64| LEFT + ((ms - series.from_ms) as f64 / span).clamp(0.0, 1.0) * plot_w;
    let drawn: Vec<(i64, u64, f64, f64, f64)> = series
        .points
        .iter()
        .filter(|p| p.1 > 0)
        .map(|&(start, value)| {
            let (x0, x1) = (x(start), x(start + series.bucket_ms));
            // At least a pixel wide, a gap between neighbours when room.
            let w = ((x1 - x0) * 0.8).max(1.0);
            let h = (value as f64 / max as f64) * plot_h;
            (start, value, x0, w, h)
        })
        .collect();
    let total: u64 = series.points.iter().map(|p| p.1).sum();
    html! {
        figure.chart {
            figcaption { (series.title) " — " span data-total=(total) { (total) } " in the range" }
            svg data-chart=(series.name) viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
                role="img" aria-label=(series.title) xmlns="http://www.w3.org/2000/svg" {
                line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(LEFT + plot_w) y2=(TOP + plot_h) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
                text.label x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" { (max) }
                text.label x=(LEFT - 4.0) y=(TOP + plot_h) text-anchor="end" { "0" }
                text.label x=(LEFT) y=(HEIGHT - 6.0) { (day(series.from_ms)) }
                text.label x=(LEFT + plot_w) y=(HEIGHT - 6.0) text-anchor="end" { (day(series.to_ms)) }
                @for (start, value, x0, w, h) in &drawn {
                    rect class=(format!("bar {}", series.name)) data-bucket=(rfc3339(*start))
                        data-value=(value) x=(format!("{x0:.2}")) y=(format!("{:.2}", TOP + plot_h - h))
                        width=(format!("{w:.2}")) height=(format!("{h:.2}")) {
                        title { (rfc3339(*start)) ": " (value) }
                    }
                }
            }
        }
    }
}

/// A horizontal bar split in human and machine events, with the shares.
pub fn share(human: u64, machine: u64) -> Markup {
    let all = human + machine;
    let human_w = if all == 0 {
        0.0
    } else {
        WIDTH * human as f64 / all as f64
    };
    html! {
        svg.share data-chart="share" viewBox=(format!("0 0 {WIDTH} 24")) preserveAspectRatio="none" role="img"
            aria-label="human and machine events" xmlns="http://www.w3.org/2000/svg" {
            rect.human x="0" y="0" width=(format!("{human_w:.2}")) height="24" {}
            rect.machine x=(format!("{human_w:.2}")) y="0" width=(format!("{:.2}", WIDTH - human_w)) height="24" {}
        }
    }
}

/// The date of `ms` (UTC), for the axis.
fn day(ms: i64) -> String {
    rfc3339(ms).chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn one_bar_per_bucket_with_anything() {
        let series = Series {
            name: "opens",
            title: "Opens",
            from_ms: 0,
            to_ms: 10 * DAY,
            bucket_ms: DAY,
            points: vec![(0, 3), (2 * DAY, 0), (9 * DAY, 6)],
        };
        let svg = bars(&series).into_string();
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains(r#"data-bucket="1970-01-10T00:00:00Z" data-value="6""#));
        // The tallest bar fills the plot height.
        assert!(svg.contains(&format!(r#"height="{:.2}""#, HEIGHT - TOP - BOTTOM)));
        assert!(svg.contains(r#"data-total="9""#));
    }

    #[test]
    fn share_splits_the_width() {
        let svg = share(1, 3).into_string();
        assert!(svg.contains(r#"width="180.00""#), "{svg}");
        assert!(share(0, 0).into_string().contains(r#"width="0.00""#));
    }
}
