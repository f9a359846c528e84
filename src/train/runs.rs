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
    /// A trainer holds the run now (in this process or another).
    pub training: bool,
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
        training: super::run_dir::is_training(dir),
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
    /// The step the last trainer began at: `last`'s elapsed time counts the steps since.
    pub started_at: u64,
    pub finished: bool,
    /// It ended because the operator stopped it.
    pub stopped: bool,
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
                // Logs older than the `started` line: a clock that went back is a restart.
                if let Some(last) = metrics.last.as_ref().filter(|last| step.elapsed_seconds < last.elapsed_seconds) {
                    metrics.started_at = last.step;
                }
                metrics.last = Some(step);
            }
            MetricsRecord::Validation { step, val_loss } => metrics.validation.push((step, val_loss)),
            MetricsRecord::Samples { paths, step } => metrics.samples.push((step, paths)),
            MetricsRecord::Finished { stopped, .. } => (metrics.finished, metrics.stopped) = (true, stopped),
            MetricsRecord::Checkpoint { step, .. } => metrics.checkpoints.push(step),
            MetricsRecord::ResumedFrom { run, step } => {
                metrics.started_at = step;
                metrics.resumed_from = Some((run, step));
            }
            MetricsRecord::Started { step } => metrics.started_at = step,
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

impl RunMetrics {
    /// Optimizer steps per second since the last trainer began (a resumed
    /// run's earlier steps took another process's time).
    pub fn steps_per_second(&self) -> Option<f64> {
        let last = self.last.as_ref().filter(|last| last.elapsed_seconds > 0.0)?;
        Some(last.steps_per_second_since(self.started_at))
    }
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
        assert!(!runs[1].training, "no trainer holds it");
    }

    #[test]
    fn the_rate_counts_the_steps_since_the_trainer_began() {
        let dir = tempfile::tempdir().unwrap();
        let step = |step: u64, elapsed_seconds: f64| {
            let metrics = StepMetrics {
                elapsed_seconds,
                epoch: 0,
                grad_norm: 0.0,
                loss: 0.1,
                lr: 1e-4,
                memory_mib: None,
                samples_per_second: 0.0,
                step,
                total: 400,
            };
            MetricsRecord::Step(metrics).to_line().unwrap()
        };
        // 100 steps in 20 s; resumed at 100, then 100 more in 20 s.
        let started = |step| MetricsRecord::Started { step }.to_line().unwrap();
        let log = [started(0), step(50, 10.0), step(100, 20.0), started(100), step(150, 10.0), step(200, 20.0)];
        fs::write(dir.path().join("metrics.jsonl"), log.concat()).unwrap();
        assert_eq!(read_metrics(dir.path()).steps_per_second(), Some(5.0));
        // The same without `started` lines (an older log): the clock going back says it.
        let log = [step(50, 10.0), step(100, 20.0), step(150, 10.0), step(200, 20.0)];
        fs::write(dir.path().join("metrics.jsonl"), log.concat()).unwrap();
        assert_eq!(read_metrics(dir.path()).steps_per_second(), Some(5.0));
        // A roll-back's new run: its log begins with the history it was copied with.
        let resumed = MetricsRecord::ResumedFrom { run: "a".into(), step: 100 }.to_line().unwrap();
        let log = [step(50, 5.0), step(100, 10.0), resumed, step(150, 25.0), step(200, 50.0)];
        fs::write(dir.path().join("metrics.jsonl"), log.concat()).unwrap();
        assert_eq!(read_metrics(dir.path()).steps_per_second(), Some(2.0));
    }

    #[test]
    fn no_runs_folder_means_no_runs() {
        assert!(list_runs(Path::new("/nonexistent/runs")).is_empty());
    }
}
