//! `--plot FILE.svg`: latency by percentile, the way HdrHistogram plots are read (the x axis is
//! 1 / (1 - percentile) on a log scale, so 90%, 99%, 99.9%... are evenly spaced and the tail
//! is as wide as the body), and requests per second over time below it, with the share of the
//! machine's CPU time its host stole in each second on the right axis when it was read.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::{Report, Second};

/// Picture size, pixels.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 900;
const UPPER_HEIGHT: u32 = 520;

/// One curve of the percentile chart: (x = 1 / (1 - quantile), latency in us).
pub fn percentile_points(report: &Report) -> Vec<(f64, f64)> {
    let histogram = &report.latency;
    let mut points = Vec::new();
    if histogram.is_empty() {
        return points;
    }
    let count = histogram.len() as f64;
    // Stop where the percentile has fewer than one sample behind it.
    for value in histogram.iter_quantiles(5) {
        let quantile = value.quantile_iterated_to();
        if quantile >= 1.0 || 1.0 / (1.0 - quantile) > count {
            break;
        }
        let x = 1.0 / (1.0 - quantile);
        points.push((x, (value.value_iterated_to() as f64 / 1_000.0).max(0.001)));
    }
    let x_end = points.last().map_or(1.0, |(x, _)| *x).max(count.min(1e7));
    points.push((x_end, (histogram.max() as f64 / 1_000.0).max(0.001)));
    points
}

fn percentile_label(x: f64) -> String {
    let percentile = 100.0 * (1.0 - 1.0 / x);
    if x < 1.5 {
        "0%".into()
    } else if percentile < 99.0 {
        format!("{percentile:.0}%")
    } else {
        // 99%, 99.9%, 99.99%: as many decimals as the nines.
        let decimals = (x.log10().round() as usize).saturating_sub(2);
        format!("{percentile:.decimals$}%")
    }
}

/// Writes the two charts to `path`.
pub fn write_svg(path: &Path, title: &str, report: &Report) -> anyhow::Result<()> {
    let fail = |error: &dyn std::fmt::Display| anyhow!("cannot draw {}: {error}", path.display());
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| fail(&error))?;
    let (upper, lower) = root.split_vertically(UPPER_HEIGHT);

    let points = percentile_points(report);
    let x_max = points.last().map_or(10.0, |(x, _)| *x).max(10.0);
    let y_max = points.iter().map(|(_, y)| *y).fold(1.0, f64::max) * 1.5;
    let y_min = points
        .iter()
        .map(|(_, y)| *y)
        .fold(f64::MAX, f64::min)
        .min(y_max / 10.0)
        * 0.7;
    let mut chart = ChartBuilder::on(&upper)
        .caption(format!("{title}: latency by percentile"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max).log_scale(), (y_min.max(0.001)..y_max).log_scale())
        .map_err(|error| fail(&error))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us, log)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|error| fail(&error))?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(|error| fail(&error))?
        .label("latency from the intended send time")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|error| fail(&error))?;

    // The seconds of the run; the drain after it (flows finishing) would read as a collapse.
    let run_end_s = (report.warmup_s + report.measured_s).ceil() as u64;
    let seconds: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .filter(|second| second.second <= run_end_s)
        .map(|second| (second.second as f64, second.replies as f64))
        .collect();
    let stolen = stolen_runs(&report.timeline, run_end_s);
    let t_max = seconds.last().map_or(1.0, |(t, _)| *t).max(1.0);
    let rate_max = seconds.iter().map(|(_, rate)| *rate).fold(1.0, f64::max) * 1.15;
    // At least 0-5%, so that a calm machine's few tenths lie low rather than fill the chart.
    let stolen_max = stolen.iter().flatten().map(|(_, pct)| *pct).fold(5.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&lower)
        .caption("requests per second", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(if stolen.is_empty() { 0 } else { 60 })
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(|error| fail(&error))?
        .set_secondary_coord(0.0..t_max, 0.0..stolen_max);
    chart
        .configure_mesh()
        .x_desc("seconds since start (warm-up included)")
        .y_desc("requests/s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|error| fail(&error))?;
    chart
        .draw_series(LineSeries::new(seconds, RED.stroke_width(2)))
        .map_err(|error| fail(&error))?
        .label("requests/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    if !stolen.is_empty() {
        chart
            .configure_secondary_axes()
            .y_desc("stolen by the host (% of CPU time)")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|error| fail(&error))?;
        for (index, run) in stolen.into_iter().enumerate() {
            let drawn = chart
                .draw_secondary_series(LineSeries::new(run, BLACK.stroke_width(1)))
                .map_err(|error| fail(&error))?;
            if index == 0 {
                drawn
                    .label("stolen by the host, % of CPU time (right axis)")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            }
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::MiddleLeft)
        .draw()
        .map_err(|error| fail(&error))?;
    root.present().map_err(|error| fail(&error))?;
    Ok(())
}

/// Each second's stolen share as (second, percent), in runs of consecutive seconds that have
/// one: a second without (its boundaries not both read) breaks the line rather than being
/// bridged by it.
fn stolen_runs(timeline: &[Second], run_end_s: u64) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last_second = None;
    for second in timeline.iter().filter(|second| second.second <= run_end_s) {
        let Some(pct) = second.stolen_pct else {
            continue;
        };
        let point = (second.second as f64, pct);
        match runs.last_mut() {
            Some(run) if last_second == Some(second.second.wrapping_sub(1)) => run.push(point),
            _ => runs.push(vec![point]),
        }
        last_second = Some(second.second);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_without_its_steal_breaks_the_line() {
        let second = |second, stolen_pct| Second {
            second,
            replies: 1,
            declines: 0,
            errors: 0,
            p50_us: None,
            p99_us: None,
            warmup: false,
            stolen_pct,
        };
        let timeline = [
            second(1, Some(1.0)),
            second(2, Some(2.0)),
            second(3, None),
            second(4, Some(4.0)),
            second(5, Some(5.0)),
            second(6, Some(6.0)),
        ];
        assert_eq!(
            stolen_runs(&timeline, 5),
            [vec![(1.0, 1.0), (2.0, 2.0)], vec![(4.0, 4.0), (5.0, 5.0)]],
            "second 3 breaks it; second 6 is the drain"
        );
        assert!(stolen_runs(&timeline[2..3], 5).is_empty());
    }

    #[test]
    fn percentile_labels_read_like_hdrhistogram_plots() {
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10_000.0), "99.99%");
    }
}
