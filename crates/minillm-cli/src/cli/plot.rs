//! `minillm plot RUN_DIR`: the loss curves of a run (train and validation) as an SVG picture.

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    /// A run directory holding metrics.jsonl.
    run: PathBuf,
    /// Where to write the picture (default: RUN_DIR/loss.svg).
    #[arg(long, value_name = "FILE.svg")]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.run.join("loss.svg"));
    let (train, val) = write_plot(&a.run, &out)?;
    println!("plotted {train} training steps and {val} evaluations to {}", out.display());
    Ok(())
}

/// Reads `run/metrics.jsonl` and writes the loss curves to `out` (atomically). Returns the
/// number of training and validation points.
pub fn write_plot(run: &Path, out: &Path) -> Result<(usize, usize)> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        let step =
            v["step"].as_f64().with_context(|| format!("{} line {}: no step", path.display(), i + 1))?;
        if let Some(loss) = v["loss"].as_f64() {
            train.push((step, loss));
        }
        if let Some(loss) = v["val_loss"].as_f64() {
            val.push((step, loss));
        }
    }
    if train.is_empty() {
        bail!("{} holds no training steps yet", path.display());
    }
    let smoothed = moving_average(&train, (train.len() / 50).max(1));
    let max_step = train.last().map_or(1.0, |p| p.0).max(1.0);
    let all = train.iter().chain(&val).map(|p| p.1);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("loss: {}", run.display()), ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..max_step, (lo * 0.95)..(hi * 1.02))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("cross-entropy (nats per token)")
            .draw()?;
        chart.draw_series(LineSeries::new(train.iter().copied(), RGBColor(180, 200, 235)))?;
        chart
            .draw_series(LineSeries::new(smoothed, BLUE.stroke_width(2)))?
            .label("train (moving average)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))?
                .label("validation")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
            chart.draw_series(val.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        root.present()?;
    }
    minillm::fsutil::atomic_write(out, svg.as_bytes())?;
    Ok((train.len(), val.len()))
}

fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    points
        .windows(window)
        .map(|w| (w[w.len() - 1].0, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64))
        .collect()
}
