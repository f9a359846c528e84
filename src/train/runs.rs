use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::records::{MetricsRecord, StepMetrics, complete_lines};
use super::run_dir::{CheckpointFile, RunDir};

/// What a run directory holds, as far as can be told without loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub id: String,
    pub dir: PathBuf,
    /// The `step` of the last complete line of metrics.jsonl.
    pub last_step: Option<u64>,
    /// Its checkpoint LoRAs, ascending by step.
    pub checkpoints: Vec<CheckpointFile>,
    pub sample_images: usize,
}

/// The runs under `runs_dir`, oldest first (run ids start with their start time).
/// A missing folder simply means no runs yet.
pub fn list_runs(runs_dir: &Path) -> Vec<RunSummary> {
    let Ok(items) = fs::read_dir(runs_dir) else { return Vec::new() };
    let mut runs: Vec<RunSummary> = items
        .filter_map(Result::ok)
        .filter(|item| item.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|item| !item.file_name().to_string_lossy().starts_with('.'))
        .map(|item| summarize(&item.path(), item.file_name().to_string_lossy().into_owned()))
        .collect();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    runs
}

fn summarize(dir: &Path, id: String) -> RunSummary {
    RunSummary {
        last_step: last_metrics_step(&dir.join("metrics.jsonl")).ok().flatten(),
        checkpoints: RunDir { id: id.clone(), dir: dir.to_path_buf() }.checkpoint_files(),
        sample_images: count_files(&dir.join("samples"), "png"),
        dir: dir.to_path_buf(),
        id,
    }
}

/// Reads only the tail of the log: it grows by one line per logged step.
fn last_metrics_step(path: &Path) -> io::Result<Option<u64>> {
    const TAIL: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    Ok(complete_lines(&text).rev().find_map(MetricsRecord::parse).map(|record| record.step()))
}

/// What a run's metrics.jsonl says, for charts: loss and learning rate per
/// logged step, validation points, sample rounds, and the last step's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    pub loss: Vec<(u64, f64)>,
    pub lr: Vec<(u64, f64)>,
    pub validation: Vec<(u64, f64)>,
    /// Step → sample image paths.
    pub samples: Vec<(u64, Vec<PathBuf>)>,
    /// Steps at which a checkpoint was completed (some may since have been pruned).
    pub checkpoints: Vec<u64>,
    pub last: Option<StepMetrics>,
    pub finished: bool,
    /// `train.steps` from the run's frozen project.toml, when readable.
    pub total: Option<u64>,
    /// The run and checkpoint step this run was continued from, as a new run.
    pub resumed_from: Option<(String, u64)>,
}

/// Reads a run's metrics.jsonl; a torn last line (a writer mid-line) is ignored.
pub fn read_metrics(dir: &Path) -> RunMetrics {
    let mut metrics = RunMetrics::default();
    let text = fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    for record in complete_lines(&text).filter_map(MetricsRecord::parse) {
        match record {
            MetricsRecord::Step(step) => {
                metrics.loss.push((step.step, step.loss));
                metrics.lr.push((step.step, step.lr));
                metrics.last = Some(step);
            }
            MetricsRecord::Validation { step, val_loss } => metrics.validation.push((step, val_loss)),
            MetricsRecord::Samples { paths, step } => metrics.samples.push((step, paths)),
            MetricsRecord::Finished { .. } => metrics.finished = true,
            MetricsRecord::Checkpoint { step, .. } => metrics.checkpoints.push(step),
            MetricsRecord::ResumedFrom { run, step } => metrics.resumed_from = Some((run, step)),
        }
    }
    // Runs logged before steps recorded their total have 0 there.
    let logged_total = metrics.last.as_ref().map(|step| step.total).filter(|&total| total > 0);
    metrics.total = logged_total.or_else(|| {
        fs::read_to_string(dir.join("project.toml"))
            .ok()
            .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
            .and_then(|table| table.get("train")?.get("steps")?.as_integer())
            .map(|steps| steps as u64)
    });
    metrics
}

/// Files with `extension` anywhere under `dir`.
fn count_files(dir: &Path, extension: &str) -> usize {
    let Ok(items) = fs::read_dir(dir) else { return 0 };
    items
        .filter_map(Result::ok)
        .map(|item| {
            let path = item.path();
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&path, extension)
            } else {
                usize::from(path.extension().is_some_and(|e| e.eq_ignore_ascii_case(extension)))
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_runs_and_ignores_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("20261126-120000");
        fs::create_dir_all(run.join("checkpoints")).unwrap();
        fs::create_dir_all(run.join("samples/step-000010")).unwrap();
        let validation = |step| MetricsRecord::Validation { step, val_loss: 0.1 }.to_line().unwrap();
        fs::write(run.join("metrics.jsonl"), [validation(5), validation(10), b"{\"step\":1".to_vec()].concat())
            .unwrap();
        fs::write(run.join("checkpoints/step-000010.safetensors"), b"lora").unwrap();
        fs::write(run.join("checkpoints/step-000010.state.safetensors"), b"").unwrap();
        fs::write(run.join("samples/step-000010/0.png"), b"").unwrap();
        fs::write(run.join("samples/step-000010/1.png"), b"").unwrap();
        fs::create_dir_all(dir.path().join("20261125-090000")).unwrap();

        let runs = list_runs(dir.path());
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, "20261125-090000");
        assert_eq!(runs[0].last_step, None);
        assert_eq!((runs[1].last_step, runs[1].sample_images), (Some(10), 2));
        // The LoRA is listed, not its trainer state beside it.
        let checkpoint = CheckpointFile {
            step: 10,
            lora: run.join("checkpoints/step-000010.safetensors"),
            bytes: 4,
            resumable: true,
        };
        assert_eq!(runs[1].checkpoints, [checkpoint]);
    }

    #[test]
    fn no_runs_folder_means_no_runs() {
        assert!(list_runs(Path::new("/nonexistent/runs")).is_empty());
    }
}
