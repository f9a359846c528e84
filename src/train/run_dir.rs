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
use crate::fsutil::atomic_write;

pub const FROZEN_CONFIG: &str = "project.toml";
pub const METRICS: &str = "metrics.jsonl";

/// `YYYYMMDD-HHMMSS` in UTC: run ids sort by start time.
pub fn timestamp_id(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let t = crate::utc::UtcTime::from_unix(secs as i64);
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

pub fn unix_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
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
        let dir = runs_dir.join(&id);
        if !dir.join(FROZEN_CONFIG).is_file() {
            bail!("{}: not a run folder (no {FROZEN_CONFIG})", dir.display());
        }
        Ok(Self { id, dir })
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

    /// Steps with a complete checkpoint (LoRA and trainer state), ascending.
    /// The LoRA file is written last, so its presence marks completion.
    pub fn checkpoint_steps(&self) -> Vec<u64> {
        let Ok(items) = fs::read_dir(self.dir.join("checkpoints")) else { return vec![] };
        let mut steps: Vec<u64> = items
            .filter_map(Result::ok)
            .filter_map(|item| {
                let name = item.file_name().to_string_lossy().into_owned();
                name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()
            })
            .filter(|&step| self.checkpoint_paths(step).1.is_file())
            .collect();
        steps.sort_unstable();
        steps
    }

    /// Keeps the newest `keep` checkpoints and the one with the lowest
    /// validation loss; deletes the rest (state file first, then LoRA).
    pub fn prune_checkpoints(&self, keep: usize, validation: &HashMap<u64, f64>) {
        let steps = self.checkpoint_steps();
        let best = validation
            .iter()
            .filter(|(step, _)| steps.contains(step))
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(step, _)| *step);
        let keep_from = steps.len().saturating_sub(keep.max(1));
        for (index, &step) in steps.iter().enumerate() {
            if index >= keep_from || Some(step) == best {
                continue;
            }
            let (lora, state) = self.checkpoint_paths(step);
            let _ = fs::remove_file(state);
            let _ = fs::remove_file(lora);
        }
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
        run.prune_checkpoints(2, &validation);
        assert_eq!(run.checkpoint_steps(), vec![200, 300, 400]);
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
}
