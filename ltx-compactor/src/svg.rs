//! The `--svg` chart: restore-plan size across the retention window and
//! bytes per level, ours (cumulative and ladder shape) beside Litestream's
//! ladder.

use std::path::Path;

use anyhow::{anyhow, Result};
use ltx_compactor::simulate::{LadderReport, SimReport};
use plotters::prelude::*;

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// The colour of a ladder, the same whichever ladders ran.
fn colour(l: &LadderReport) -> RGBColor {
    match l.ladder.as_str() {
        "ours" => COLORS[0],
        "ours-ladder" => COLORS[1],
        _ => COLORS[2],
    }
}

pub fn draw(report: &SimReport, path: &Path) -> Result<()> {
    let ladders: Vec<&LadderReport> = report.ladders().collect();
    let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(480);
    let max_age = ladders
        .iter()
        .flat_map(|l| l.profile.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_files = ladders
        .iter()
        .flat_map(|l| l.profile.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(12) as f64
        + 2.0;
    let title = format!(
        "Restore plan size by target age ({} workload, {} tx/s, end of day {})",
        match report.params.workload {
            ltx_compactor::simulate::Workload::Default => "default",
            ltx_compactor::simulate::Workload::Random => "random",
        },
        report.params.rate,
        report.params.days
    );
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_age / 60.0, 0f64..max_files)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("target age (hours before now)")
        .y_desc("files in the restore plan")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for l in &ladders {
        let c = colour(l);
        chart
            .draw_series(LineSeries::new(
                l.profile.iter().map(|&(a, n)| (a / 60.0, n as f64)),
                c,
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!(
                "{} (max {}, mean {:.1})",
                l.ladder, l.max_restore_files, l.mean_restore_files
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 12.0), (max_age / 60.0, 12.0)],
            BLACK.mix(0.3),
        ))
        .map_err(|e| anyhow!("{e}"))?
        .label("goal: 12 files")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;

    // Bytes per level, side by side.
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let max_b = ladders
        .iter()
        .flat_map(|l| l.bytes_per_level.iter().map(|&b| mib(b)))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut bars = ChartBuilder::on(&bottom)
        .caption(
            "MiB stored per level at the end (9 = snapshots)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..9.5f64, 0f64..max_b)
        .map_err(|e| anyhow!("{e}"))?;
    bars.configure_mesh()
        .x_desc("level")
        .y_desc("MiB")
        .x_labels(10)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let n = ladders.len().max(1) as f64;
    for (i, l) in ladders.iter().enumerate() {
        let c = colour(l);
        let w = 0.8 / n;
        bars.draw_series(l.bytes_per_level.iter().enumerate().map(|(lv, &b)| {
            let x0 = lv as f64 - 0.4 + i as f64 * w;
            Rectangle::new([(x0, 0.0), (x0 + w * 0.95, mib(b))], c.filled())
        }))
        .map_err(|e| anyhow!("{e}"))?
        .label(format!(
            "{} ({:.0} MiB total)",
            l.ladder,
            mib(l.bytes_stored)
        ))
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
    }
    bars.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
