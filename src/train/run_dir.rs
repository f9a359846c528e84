//! A run's folder: `runs/<id>/` with the frozen project.toml, `metrics.jsonl`,
//! `checkpoints/` (a kohya LoRA plus a trainer-state file per checkpoint)
//! and `samples/step-NNNNNN/`. Every file is written atomically, metrics
//! lines with a single append each, so a kill never leaves a torn record.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

use super::records::{MetricsRecord, complete_lines};
use crate::fsutil::{atomic_copy, atomic_write};

pub const FROZEN_CONFIG: &str = "project.toml";
pub const METRICS: &str = "metrics.jsonl";

/// Held by the trainer of a run while it trains (an OS file lock, so a
/// killed trainer holds it no more).
const TRAINING_LOCK: &str = "training.lock";

/// Whether a trainer holds the run in `dir` now, in this process or another.
pub fn is_training(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(TRAINING_LOCK)) else { return false };
    matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

/// A finished run's LoRA, `<project>.safetensors` in its folder (a copy of its last checkpoint).
pub fn final_lora(run_dir: &Path, project_name: &str) -> PathBuf {
    run_dir.join(format!("{}.safetensors", super::file_stem(project_name)))
}

/// Where a run's evaluation is written (by `evaluate`, which owns its report).
pub fn evaluation_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("eval").join("default")
}

/// `YYYYMMDD-HHMMSS` in UTC: run ids sort by start time.
pub fn timestamp_id(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let t = crate::utc::UtcTime::from_unix(secs as i64);
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

pub fn unix_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A checkpoint's LoRA file, as listed in its run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    pub step: u64,
    pub lora: PathBuf,
    pub bytes: u64,
    /// Its trainer state (optimizer moments) is there too.
    pub resumable: bool,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub dir: PathBuf,
}

impl RunDir {
    /// Creates `runs/<timestamp>` (with a suffix if taken) and freezes the
    /// project's configuration text into it.
    pub fn create(runs_dir: &Path, config_text: &str) -> Result<Self> {
        fs::create_dir_all(runs_dir).with_context(|| format!("cannot create {}", runs_dir.display()))?;
        let base = timestamp_id(SystemTime::now());
        let mut id = base.clone();
        for n in 2.. {
            match fs::create_dir(runs_dir.join(&id)) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => id = format!("{base}-{n}"),
                Err(e) => return Err(e).with_context(|| format!("cannot create a run in {}", runs_dir.display())),
            }
        }
        let run = Self { dir: runs_dir.join(&id), id };
        for sub in ["checkpoints", "samples"] {
            fs::create_dir_all(run.dir.join(sub))?;
        }
        atomic_write(&run.dir.join(FROZEN_CONFIG), config_text.as_bytes())?;
        Ok(run)
    }

    /// Holds the run for a trainer until the returned file is dropped, so
    /// that a second trainer on it (another window continuing the same run,
    /// which would interleave their checkpoints) is refused and readers can
    /// tell it trains.
    pub fn hold(&self) -> Result<File> {
        let path = self.dir.join(TRAINING_LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // A reader asking `is_training` holds it for an instant: try a few times.
        for _ in 0..20 {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(50)),
                Err(std::fs::TryLockError::Error(error)) => {
                    return Err(error).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        bail!("run {} is being trained by another process (it holds {}): stop that one first", self.id, path.display())
    }

    /// An existing run: by id, or the newest when `id` is `None`.
    pub fn open(runs_dir: &Path, id: Option<&str>) -> Result<Self> {
        let id = match id {
            Some(id) => id.to_string(),
            None => super::list_runs(runs_dir)
                .into_iter()
                .rfind(|run| run.dir.join(FROZEN_CONFIG).is_file())
                .map(|run| run.id)
                .ok_or_else(|| anyhow!("{}: no runs to resume", runs_dir.display()))?,
        };
        // A run id names a folder of runs/, never a path out of it.
        if Path::new(&id).file_name() != Some(std::ffi::OsStr::new(&id)) {
            bail!("`{id}` is not a run id (a folder name in {})", runs_dir.display());
        }
        let dir = runs_dir.join(&id);
        if !dir.is_dir() {
            let ids: Vec<String> = super::list_runs(runs_dir).into_iter().map(|run| run.id).collect();
            let known = if ids.is_empty() { "none".to_string() } else { ids.join(", ") };
            bail!("no run `{id}` in {} (its runs: {known})", runs_dir.display());
        }
        if !dir.join(FROZEN_CONFIG).is_file() {
            bail!("{}: not a run folder (no {FROZEN_CONFIG})", dir.display());
        }
        Ok(Self { id, dir })
    }

    /// Whether training can continue from the checkpoint at `step`: an
    /// error naming what is missing (the checkpoint, or its trainer state).
    pub fn resumable_checkpoint(&self, step: u64) -> Result<()> {
        let files = self.checkpoint_files();
        match files.iter().find(|file| file.step == step) {
            Some(file) if file.resumable => Ok(()),
            Some(_) => bail!(
                "run {}: the checkpoint at step {step} has no trainer state ({}), so training cannot continue from it",
                self.id,
                self.checkpoint_paths(step).1.display()
            ),
            None => {
                let steps: Vec<String> = files.iter().map(|file| file.step.to_string()).collect();
                let known = if steps.is_empty() { "none".to_string() } else { steps.join(", ") };
                bail!("run {} has no checkpoint at step {step} (its checkpoints: {known})", self.id)
            }
        }
    }

    /// A new run in `runs_dir` that continues this one from its checkpoint at
    /// `step`, leaving this one as it is: the same frozen configuration, that
    /// checkpoint, the sample rounds up to it, and the metrics lines up to it
    /// (so its charts start where this run's were), then a line naming where
    /// it came from. A failure part-way removes the new run again.
    pub fn branch(&self, runs_dir: &Path, step: u64) -> Result<RunDir> {
        self.resumable_checkpoint(step)?;
        let run = Self::create(runs_dir, &self.frozen_config()?)?;
        match self.seed(&run, step) {
            Ok(()) => Ok(run),
            Err(error) => {
                let _ = fs::remove_dir_all(&run.dir);
                Err(error.context(format!("cannot continue run {} from step {step} in a new run", self.id)))
            }
        }
    }

    /// Copies what `branch` carries into `run`.
    fn seed(&self, run: &RunDir, step: u64) -> Result<()> {
        let copy = |from: &Path, to: &Path| {
            atomic_copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
        };
        // The trainer state first: a LoRA beside it is what marks a checkpoint complete.
        let ((lora, state), (new_lora, new_state)) = (self.checkpoint_paths(step), run.checkpoint_paths(step));
        copy(&state, &new_state)?;
        copy(&lora, &new_lora)?;
        let text = match fs::read_to_string(self.metrics_path()) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            read => read.with_context(|| format!("cannot read {}", self.metrics_path().display()))?,
        };
        let mut lines = Vec::new();
        for record in complete_lines(&text).filter_map(MetricsRecord::parse).filter(|r| r.step() <= step) {
            let record = match record {
                // Paths are taken from this run's folder, not from the line: a
                // run trained from a relative project path logged relative ones.
                MetricsRecord::Samples { paths, step: at } => {
                    let folder = run.samples_dir(at);
                    fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
                    let mut copied = Vec::new();
                    for name in paths.iter().filter_map(|path| path.file_name()) {
                        let (from, to) = (self.samples_dir(at).join(name), folder.join(name));
                        // An image deleted since leaves nothing to carry.
                        if from.is_file() {
                            copy(&from, &to)?;
                            copied.push(to);
                        }
                    }
                    if copied.is_empty() {
                        continue;
                    }
                    MetricsRecord::Samples { paths: copied, step: at }
                }
                MetricsRecord::Checkpoint { step: at, .. } if at == step => {
                    MetricsRecord::Checkpoint { path: new_lora.clone(), step }
                }
                // The earlier checkpoints stay in this run only, and its end is not the new run's.
                MetricsRecord::Checkpoint { .. } | MetricsRecord::Finished { .. } => continue,
                record => record,
            };
            lines.extend(record.to_line()?);
        }
        lines.extend(MetricsRecord::ResumedFrom { run: self.id.clone(), step }.to_line()?);
        atomic_write(&run.metrics_path(), &lines)
            .with_context(|| format!("cannot write {}", run.metrics_path().display()))
    }

    /// Replaces the frozen project.toml (a continued run told to train longer records it).
    pub fn freeze_config(&self, text: &str) -> Result<()> {
        let path = self.dir.join(FROZEN_CONFIG);
        atomic_write(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn frozen_config(&self) -> Result<String> {
        let path = self.dir.join(FROZEN_CONFIG);
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join(METRICS)
    }

    pub fn samples_dir(&self, step: u64) -> PathBuf {
        self.dir.join("samples").join(format!("step-{step:06}"))
    }

    pub fn checkpoint_paths(&self, step: u64) -> (PathBuf, PathBuf) {
        let base = self.dir.join("checkpoints").join(format!("step-{step:06}"));
        (base.with_extension("safetensors"), base.with_extension("state.safetensors"))
    }

    /// Every checkpoint LoRA of the run, ascending by step: its size, and
    /// whether its trainer state is there too (training can continue from it).
    pub fn checkpoint_files(&self) -> Vec<CheckpointFile> {
        let Ok(items) = fs::read_dir(self.dir.join("checkpoints")) else { return vec![] };
        let mut files: Vec<CheckpointFile> = items
            .filter_map(Result::ok)
            .filter_map(|item| {
                let name = item.file_name().to_string_lossy().into_owned();
                // `step-N.state.safetensors` does not parse as a step: only the LoRAs are listed.
                let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()?;
                let (lora, state) = self.checkpoint_paths(step);
                Some(CheckpointFile { step, bytes: item.metadata().ok()?.len(), resumable: state.is_file(), lora })
            })
            .collect();
        files.sort_unstable_by_key(|file| file.step);
        files
    }

    /// Steps with a complete checkpoint (LoRA and trainer state), ascending.
    /// The LoRA file is written last, so its presence marks completion.
    pub fn checkpoint_steps(&self) -> Vec<u64> {
        self.checkpoint_files().into_iter().filter(|file| file.resumable).map(|file| file.step).collect()
    }

    /// Keeps the newest `keep` checkpoints, the one with the lowest
    /// validation loss and those in use (`checkpoints_in_use`); deletes the
    /// rest (state file first, then LoRA) and returns their steps.
    pub fn prune_checkpoints(&self, keep: usize, validation: &HashMap<u64, f64>) -> Vec<u64> {
        let steps = self.checkpoint_steps();
        let best = validation
            .iter()
            .filter(|(step, _)| steps.contains(step))
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(step, _)| *step);
        let in_use = self.checkpoints_in_use();
        let keep_from = steps.len().saturating_sub(keep.max(1));
        let mut pruned = Vec::new();
        for (index, &step) in steps.iter().enumerate() {
            if index >= keep_from || Some(step) == best || in_use.contains(&step) {
                continue;
            }
            let (lora, state) = self.checkpoint_paths(step);
            let _ = fs::remove_file(state);
            let _ = fs::remove_file(lora);
            pruned.push(step);
        }
        pruned
    }

    /// Steps of this run's checkpoints that something relies on: a run of
    /// the same runs/ folder that began from one (its `resumed_from`), and
    /// the one this run's evaluation recommends.
    pub fn checkpoints_in_use(&self) -> Vec<u64> {
        let mut steps = Vec::new();
        let runs = self.dir.parent().and_then(|runs| fs::read_dir(runs).ok()).into_iter().flatten();
        for run in runs.filter_map(Result::ok) {
            let Ok(text) = fs::read_to_string(run.path().join(METRICS)) else { continue };
            for line in complete_lines(&text).filter(|line| line.contains("resumed_from")) {
                if let Some(MetricsRecord::ResumedFrom { run, step }) = MetricsRecord::parse(line)
                    && run == self.id
                {
                    steps.push(step);
                }
            }
        }
        steps.extend(self.recommended_checkpoint());
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// The checkpoint this run's evaluation recommends. Only the verdict's
    /// step is read here: the report is the evaluation's to define.
    fn recommended_checkpoint(&self) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Report {
            verdict: Option<Verdict>,
        }
        #[derive(serde::Deserialize)]
        struct Verdict {
            recommended_step: Option<u64>,
        }
        let text = fs::read_to_string(evaluation_dir(&self.dir).join("eval.json")).ok()?;
        serde_json::from_str::<Report>(&text).ok()?.verdict?.recommended_step
    }

    /// Drops metrics lines past `step` (and a torn last line): a resumed run
    /// rewrites those steps, and must not log them twice.
    pub fn truncate_metrics(&self, step: u64) -> Result<()> {
        let path = self.metrics_path();
        let Ok(text) = fs::read_to_string(&path) else { return Ok(()) };
        // Kept lines are copied as they were, not written anew.
        let kept: String = complete_lines(&text)
            .filter(|line| MetricsRecord::parse(line).is_some_and(|record| record.step() <= step))
            .map(|line| format!("{line}\n"))
            .collect();
        atomic_write(&path, kept.as_bytes()).with_context(|| format!("cannot rewrite {}", path.display()))
    }
}

/// `metrics.jsonl`, appended one whole line per write.
pub struct MetricsLog {
    file: File,
    path: PathBuf,
}

impl MetricsLog {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file, path: path.to_path_buf() })
    }

    /// Appends `record` as one line with a single write, so a reader (or a
    /// kill) sees the whole line or none of it.
    pub fn append(&mut self, record: &MetricsRecord) -> Result<()> {
        let line = record.to_line()?;
        self.file.write_all(&line).with_context(|| format!("cannot append to {}", self.path.display()))?;
        self.file.flush()?;
        Ok(())
    }
}

/// The process's resident memory in MiB (Linux), for the metrics.
pub fn resident_memory_mib() -> Option<f64> {
    let statm = fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_utc_timestamps() {
        assert_eq!(timestamp_id(UNIX_EPOCH), "19700101-000000");
        let time = UNIX_EPOCH + std::time::Duration::from_secs(1_795_700_000);
        assert_eq!(timestamp_id(time), "20261126-133320");
    }

    #[test]
    fn checkpoints_count_only_when_complete_and_pruning_keeps_the_best() {
        let runs = tempfile::tempdir().unwrap();
        let run = RunDir::create(runs.path(), "name = \"x\"\n").unwrap();
        for step in [100, 200, 300, 400] {
            let (lora, state) = run.checkpoint_paths(step);
            fs::write(state, b"s").unwrap();
            fs::write(lora, b"l").unwrap();
        }
        fs::write(run.checkpoint_paths(500).0, b"torn").unwrap();
        assert_eq!(run.checkpoint_steps(), vec![100, 200, 300, 400]);
        let validation = HashMap::from([(100, 0.5), (200, 0.2), (300, 0.4), (400, 0.3)]);
        assert_eq!(run.prune_checkpoints(2, &validation), [100]);
        assert_eq!(run.checkpoint_steps(), vec![200, 300, 400]);
    }

    #[test]
    fn pruning_keeps_what_a_roll_back_started_from_and_what_an_evaluation_recommends() {
        let runs = tempfile::tempdir().unwrap();
        let run = RunDir::create(runs.path(), "name = \"x\"\n").unwrap();
        for step in [100, 200, 300, 400, 500, 600] {
            let (lora, state) = run.checkpoint_paths(step);
            fs::write(state, b"s").unwrap();
            fs::write(lora, b"l").unwrap();
        }
        // A roll-back from step 100 (a new run beside it), another run's
        // roll-back from its own step 200, and an evaluation recommending 300.
        let branch = run.branch(runs.path(), 100).unwrap();
        let other = RunDir::create(runs.path(), "").unwrap();
        let line = MetricsRecord::ResumedFrom { run: format!("{}-elsewhere", run.id), step: 200 }.to_line().unwrap();
        fs::write(other.metrics_path(), line).unwrap();
        fs::create_dir_all(evaluation_dir(&run.dir)).unwrap();
        let report = r#"{"cells": [], "verdict": {"recommended_step": 300, "words": "step 300"}}"#;
        fs::write(evaluation_dir(&run.dir).join("eval.json"), report).unwrap();
        assert_eq!(run.checkpoints_in_use(), [100, 300]);
        assert_eq!(run.prune_checkpoints(2, &HashMap::new()), [200, 400]);
        assert_eq!(run.checkpoint_steps(), vec![100, 300, 500, 600]);
        assert_eq!(branch.checkpoint_steps(), [100], "the roll-back has its own copy too");
    }

    #[test]
    fn truncating_metrics_drops_later_steps_and_torn_lines() {
        let runs = tempfile::tempdir().unwrap();
        let run = RunDir::create(runs.path(), "").unwrap();
        let mut log = MetricsLog::open(&run.metrics_path()).unwrap();
        for step in 1..=5u64 {
            log.append(&MetricsRecord::Validation { step, val_loss: 0.1 }).unwrap();
        }
        let mut file = OpenOptions::new().append(true).open(run.metrics_path()).unwrap();
        file.write_all(b"{\"step\": 6, \"lo").unwrap();
        run.truncate_metrics(3).unwrap();
        let text = fs::read_to_string(run.metrics_path()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_branch_carries_the_checkpoint_and_the_history_up_to_it_and_leaves_its_source_alone() {
        let runs = tempfile::tempdir().unwrap();
        let source = RunDir::create(runs.path(), "name = \"x\"\n").unwrap();
        let mut log = MetricsLog::open(&source.metrics_path()).unwrap();
        for step in [2, 4] {
            let (lora, state) = source.checkpoint_paths(step);
            fs::write(state, format!("state {step}")).unwrap();
            fs::write(&lora, format!("lora {step}")).unwrap();
            let samples = source.samples_dir(step);
            fs::create_dir_all(&samples).unwrap();
            fs::write(samples.join("00-seed1.png"), format!("png {step}")).unwrap();
            // Relative, as a run trained from a relative project path logs them.
            let logged = PathBuf::from(format!("runs/x/samples/step-{step:06}/00-seed1.png"));
            log.append(&MetricsRecord::Validation { step, val_loss: step as f64 }).unwrap();
            log.append(&MetricsRecord::Samples { paths: vec![logged], step }).unwrap();
            log.append(&MetricsRecord::Checkpoint { path: lora, step }).unwrap();
        }
        log.append(&MetricsRecord::Finished { lora: source.dir.join("x.safetensors"), step: 4, stopped: false })
            .unwrap();
        let before: Vec<(PathBuf, Vec<u8>)> = files(&source.dir);

        let error = source.branch(runs.path(), 3).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!("run {} has no checkpoint at step 3 (its checkpoints: 2, 4)", source.id)
        );
        fs::remove_file(source.checkpoint_paths(4).1).unwrap();
        let error = source.branch(runs.path(), 4).unwrap_err();
        assert!(format!("{error:#}").contains("the checkpoint at step 4 has no trainer state"), "{error:#}");
        fs::write(source.checkpoint_paths(4).1, "state 4").unwrap();
        assert_eq!(fs::read_dir(runs.path()).unwrap().count(), 1, "a refused branch makes no run");

        let branch = source.branch(runs.path(), 2).unwrap();
        assert_ne!(branch.id, source.id);
        assert_eq!(files(&source.dir), before, "the source run is untouched");
        assert_eq!(branch.frozen_config().unwrap(), "name = \"x\"\n");
        assert_eq!(branch.checkpoint_steps(), [2]);
        assert_eq!(fs::read(branch.checkpoint_paths(2).0).unwrap(), b"lora 2");
        assert_eq!(fs::read(branch.checkpoint_paths(2).1).unwrap(), b"state 2");
        let image = branch.samples_dir(2).join("00-seed1.png");
        assert_eq!(fs::read(&image).unwrap(), b"png 2");
        let text = fs::read_to_string(branch.metrics_path()).unwrap();
        let records: Vec<MetricsRecord> = text.lines().map(|line| MetricsRecord::parse(line).unwrap()).collect();
        assert_eq!(
            records,
            [
                MetricsRecord::Validation { step: 2, val_loss: 2.0 },
                MetricsRecord::Samples { paths: vec![image], step: 2 },
                MetricsRecord::Checkpoint { path: branch.checkpoint_paths(2).0, step: 2 },
                MetricsRecord::ResumedFrom { run: source.id.clone(), step: 2 },
            ]
        );
    }

    /// Every file under `dir` with its bytes, by path.
    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut found = Vec::new();
        for item in fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                found.extend(files(&path));
            } else {
                found.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn a_run_id_is_a_folder_of_runs_never_a_path_out_of_it() {
        let runs = tempfile::tempdir().unwrap();
        let run = RunDir::create(runs.path(), "").unwrap();
        assert_eq!(RunDir::open(runs.path(), Some(&run.id)).unwrap().dir, run.dir);
        for id in ["..", ".", "a/b", "../x"] {
            let error = RunDir::open(runs.path(), Some(id)).unwrap_err();
            assert!(format!("{error}").contains("is not a run id"), "{id}: {error}");
        }
        let error = RunDir::open(runs.path(), Some("nope")).unwrap_err();
        assert_eq!(format!("{error}"), format!("no run `nope` in {} (its runs: {})", runs.path().display(), run.id));
    }
}
