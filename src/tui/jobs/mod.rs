//! The job runner: every piece of work the workbench does off its UI task
//! (reading the project's files and runs, scanning, decoding previews,
//! writing captions, moving images, saving the theme, training) is started
//! here from an `Effect` and reported back as one `Done`. It owns the
//! channels and what is in flight; the event loop only starts effects and
//! waits for `next`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

mod captions;

use crate::captions::auto::{AutoProgress, AutoSummary};
use crate::captions::journal::JournalError;
use crate::dataset::Inventory;
use crate::dataset::decisions::{self, Decision, Kept};
use crate::dataset::scan::ScanReport;
use crate::project::Project;
use crate::train::{Command, Event, Resume, RunMetrics, TrainOptions, list_runs, read_metrics};

use super::effect::{CaptionJob, Effect, ExportRequest};
use super::preview;
use super::shared::{ProjectFiles, Shared, SharedContext};
use crate::evaluate::render::Progress;
use crate::evaluate::report::EvalReport;
use crate::model::lora_file::{ExportOptions, export};
use captions::auto_caption;
pub use captions::write_captions;

/// Re-reading the shown run's metrics while a run trains: at most this often.
const METRICS_EVERY: Duration = Duration::from_millis(300);
/// Previews decoded at once: holding a key down must not start dozens.
const PREVIEWS_AT_ONCE: usize = 2;

/// What a scan delivers.
#[derive(Debug, Clone, Default)]
pub struct ScanResult {
    pub report: ScanReport,
    /// Relative to `_rejected/`.
    pub rejected: Vec<PathBuf>,
    pub kept: Kept,
}

/// A finished job.
#[derive(Debug)]
pub enum Done {
    Files(Box<ProjectFiles>),
    /// The shown and compared runs' metrics, and the folders they were read from.
    Metrics(Box<(MetricsRequest, Option<RunMetrics>, Option<RunMetrics>)>),
    ScanProgress(usize, usize),
    Scanned(ScanResult),
    Preview(PathBuf, Result<image::DynamicImage, String>),
    /// A preview not decoded now (too many at once): asked for again if still shown.
    /// Reported at once by `start`, never by `next`, so it cannot wake the loop.
    PreviewSkipped(PathBuf),
    Trainer(Event),
    /// A command found no trainer running.
    TrainerGone,
    Caption(CaptionJob, Result<String, JournalError>),
    /// A keep/reject/restore: its message, the kept list as read back after a
    /// keep (files moved otherwise).
    Decided {
        result: Result<String, String>,
        kept: Option<Kept>,
    },
    /// The theme was written; the project as it now reads.
    ThemeSaved(Result<Box<Project>, String>),
    /// A run's evaluation report, as read (`None`: none yet).
    Evaluation(PathBuf, Result<Option<Box<EvalReport>>, String>),
    EvaluationProgress(Progress),
    /// An evaluation ended (finished or stopped): the report, and the scoring notes.
    EvaluationEnded(PathBuf, Result<(Box<EvalReport>, Vec<String>), String>),
    /// An export ended.
    Exported(ExportRequest, Result<(), ExportError>),
    /// A background captioning run saved a batch of drafts.
    AutoCaptionProgress(AutoProgress),
    /// A background captioning run ended (finished, stopped or failed).
    AutoCaptionsEnded(Result<AutoSummary, String>),
}

/// Why an export wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// A file is at the destination and the request did not say to replace it.
    Exists,
    Failed(String),
}

pub struct Jobs {
    sender: mpsc::UnboundedSender<Done>,
    receiver: mpsc::UnboundedReceiver<Done>,
    /// A read of the files runs; one asked for meanwhile follows it (true: with captions).
    reading: bool,
    read_next: Option<bool>,
    reading_metrics: bool,
    /// A metrics read waiting for the last one to finish, or for its turn
    /// (`METRICS_EVERY`): the shown and compared runs' folders.
    metrics_next: Option<MetricsRequest>,
    metrics_read_at: Option<Instant>,
    scanning: bool,
    scan_next: bool,
    previews: usize,
    trainer: Option<std::sync::mpsc::Sender<Command>>,
    /// Writes to the project (captions, keep/reject/restore, the theme,
    /// exports) run one at a time, in order: each reads what the one before wrote.
    writing: bool,
    writes: VecDeque<Job>,
    /// Set to stop the running evaluation after the cell in hand.
    evaluation_stop: Option<Arc<AtomicBool>>,
    /// Set to stop the background captioning run after the batch in hand.
    auto_captions_stop: Option<Arc<AtomicBool>>,
}

/// A job's work, run on a blocking thread.
type Job = Box<dyn FnOnce() -> Done + Send>;

impl Default for Jobs {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver,
            reading: false,
            read_next: None,
            reading_metrics: false,
            metrics_next: None,
            metrics_read_at: None,
            scanning: false,
            scan_next: false,
            previews: 0,
            trainer: None,
            writing: false,
            writes: VecDeque::new(),
            evaluation_stop: None,
            auto_captions_stop: None,
        }
    }
}

impl Jobs {
    /// Starts the job an effect asks for; a job that is decided at once
    /// (a preview not started now, a command with no trainer) is returned
    /// done. Effects that are not jobs (a message, leaving) are the app's and
    /// the loop's, and are ignored here.
    pub fn start(&mut self, effect: Effect, shared: &Shared) -> Option<Done> {
        match effect {
            Effect::Refresh { captions } if self.reading => {
                self.read_next = Some(captions || self.read_next.unwrap_or(false));
            }
            Effect::Refresh { captions } => {
                self.reading = true;
                let request = ReadFiles::after(shared, captions);
                self.spawn(move || Done::Files(Box::new(read_files(request))));
            }
            Effect::ReadMetrics => {
                // The latest request replaces one still waiting.
                self.metrics_next =
                    Some((shared.run_dir(shared.shown_run.as_ref()), shared.run_dir(shared.compare_run.as_ref())));
                if self.metrics_due().is_some_and(|due| due <= Instant::now()) {
                    self.read_metrics();
                }
            }
            Effect::Scan if self.scanning => self.scan_next = true,
            Effect::Scan => {
                self.scanning = true;
                let project = shared.project.clone();
                let sender = self.sender.clone();
                self.spawn(move || {
                    let progress = |done: usize, total: usize| {
                        // About a hundred messages per scan move the gauge smoothly.
                        if done == total || done.is_multiple_of((total / 100).max(1)) {
                            let _ = sender.send(Done::ScanProgress(done, total));
                        }
                    };
                    Done::Scanned(scan(&project, &progress))
                });
            }
            Effect::Preview(path) if self.previews >= PREVIEWS_AT_ONCE => return Some(Done::PreviewSkipped(path)),
            Effect::Preview(path) => {
                self.previews += 1;
                self.spawn(move || {
                    let result = preview::decode(&path);
                    Done::Preview(path, result)
                });
            }
            Effect::StartTraining { resume } => self.start_training(shared.project.clone(), resume),
            Effect::Trainer(command) => {
                if self.trainer.as_ref().is_none_or(|commands| commands.send(command).is_err()) {
                    return Some(Done::TrainerGone);
                }
            }
            Effect::Decide(decision) => {
                let project = shared.project.clone();
                self.write(Box::new(move || decide(&project, &decision)));
            }
            Effect::Caption(job) => {
                let project = shared.project.clone();
                self.write(Box::new(move || {
                    let result = write_captions(&project, &job);
                    Done::Caption(job, result)
                }));
            }
            Effect::SaveTheme(name) => {
                let mut project = shared.project.clone();
                self.write(Box::new(move || {
                    let result = project.save_theme(&name).map(|()| Box::new(project)).map_err(|e| e.to_string());
                    Done::ThemeSaved(result)
                }));
            }
            Effect::Export(request) => {
                self.write(Box::new(move || {
                    let result = export_checkpoint(&request);
                    Done::Exported(request, result)
                }));
            }
            Effect::ReadEvaluation(run_dir) => {
                self.spawn(move || {
                    let folder = crate::train::run_dir::evaluation_dir(&run_dir);
                    let report = match folder.join("eval.json").is_file() {
                        true => EvalReport::read(&folder).map(|r| Some(Box::new(r))).map_err(|e| format!("{e:#}")),
                        false => Ok(None),
                    };
                    Done::Evaluation(run_dir, report)
                });
            }
            Effect::StartEvaluation(_) if self.evaluation_stop.is_some() => {}
            Effect::StartEvaluation(run_dir) => {
                let stop = Arc::new(AtomicBool::new(false));
                self.evaluation_stop = Some(stop.clone());
                let (project, sender) = (shared.project.clone(), self.sender.clone());
                std::thread::spawn(move || {
                    let result = evaluate_run(&project, &run_dir, &sender, &stop).map_err(|e| format!("{e:#}"));
                    let _ = sender.send(Done::EvaluationEnded(run_dir, result));
                });
            }
            Effect::StopEvaluation => raise(&self.evaluation_stop),
            Effect::StartAutoCaptions { .. } if self.auto_captions_stop.is_some() => {}
            Effect::StartAutoCaptions { model, scope } => {
                let stop = Arc::new(AtomicBool::new(false));
                self.auto_captions_stop = Some(stop.clone());
                let (project, sender) = (shared.project.clone(), self.sender.clone());
                std::thread::spawn(move || {
                    let result = auto_caption(&project, &model, scope, &sender, &stop).map_err(|e| format!("{e:#}"));
                    let _ = sender.send(Done::AutoCaptionsEnded(result));
                });
            }
            Effect::StopAutoCaptions => raise(&self.auto_captions_stop),
            Effect::Say(_) | Effect::ShowRuns { .. } | Effect::Quit => {}
        }
        None
    }

    /// Starts what was asked for while the same job ran, once it is done.
    pub fn start_queued(&mut self, shared: &Shared) {
        if !self.reading
            && let Some(captions) = self.read_next.take()
        {
            self.start(Effect::Refresh { captions }, shared);
        }
        if !self.scanning && std::mem::take(&mut self.scan_next) {
            self.start(Effect::Scan, shared);
        }
    }

    /// The next finished job. Cancel-safe: it can lose a `select!` race.
    pub async fn next(&mut self) -> Done {
        let done = loop {
            let due = self.metrics_due();
            tokio::select! {
                done = self.receiver.recv() => break done.expect("the runner keeps a sender"),
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => self.read_metrics(),
            }
        };
        match &done {
            Done::Files(_) => self.reading = false,
            Done::Metrics(_) => self.reading_metrics = false,
            Done::Scanned(_) => self.scanning = false,
            Done::Preview(..) => self.previews -= 1,
            Done::EvaluationEnded(..) => self.evaluation_stop = None,
            Done::AutoCaptionsEnded(_) => self.auto_captions_stop = None,
            Done::Caption(..) | Done::Decided { .. } | Done::ThemeSaved(_) | Done::Exported(..) => {
                match self.writes.pop_front() {
                    Some(next) => self.spawn(next),
                    None => self.writing = false,
                }
            }
            _ => {}
        }
        done
    }

    /// Whether a read of the files runs now.
    pub fn reading_files(&self) -> bool {
        self.reading
    }

    /// Starts a write, or queues it behind the one running.
    fn write(&mut self, job: Job) {
        if self.writing {
            self.writes.push_back(job);
        } else {
            self.writing = true;
            self.spawn(job);
        }
    }

    /// When the waiting metrics read may start: once none runs, at most every `METRICS_EVERY`.
    fn metrics_due(&self) -> Option<Instant> {
        if self.reading_metrics || self.metrics_next.is_none() {
            return None;
        }
        Some(self.metrics_read_at.map_or_else(Instant::now, |at| at + METRICS_EVERY))
    }

    fn read_metrics(&mut self) {
        let Some((shown, compare)) = self.metrics_next.take() else { return };
        self.reading_metrics = true;
        self.metrics_read_at = Some(Instant::now());
        self.spawn(move || {
            let (metrics, compare_metrics) = (shown.as_deref().map(read_metrics), compare.as_deref().map(read_metrics));
            Done::Metrics(Box::new(((shown, compare), metrics, compare_metrics)))
        });
    }

    fn spawn(&self, job: impl FnOnce() -> Done + Send + 'static) {
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || {
            let _ = sender.send(job());
        });
    }

    /// Starts the trainer on its own thread; its events come back as `Done::Trainer`.
    fn start_training(&mut self, project: Project, resume: Option<Resume>) {
        let options = TrainOptions { resume, device: crate::device::default_device(), ..TrainOptions::default() };
        let handle = crate::train::spawn(project, options);
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            for event in handle.events.iter() {
                if sender.send(Done::Trainer(event)).is_err() {
                    break;
                }
            }
        });
        self.trainer = Some(handle.commands);
    }
}

/// The shown and compared runs' folders, whose metrics are read.
pub type MetricsRequest = (Option<PathBuf>, Option<PathBuf>);

/// What a read of the project's files needs.
pub struct ReadFiles {
    pub project: Project,
    /// The inventory as last read: unchanged headers are reused.
    pub previous: Inventory,
    /// Lint the captions again even if no file changed.
    pub captions: bool,
    /// When the drafts file had last changed as last read: another change reads the drafts again.
    pub drafts_changed: Option<std::time::SystemTime>,
    /// vocabulary.toml as last read: another text has the captions linted again.
    pub vocabulary_text: Option<String>,
    /// The shown and compared runs' folders, whose metrics are read.
    pub shown: Option<PathBuf>,
    pub compare: Option<PathBuf>,
}

impl ReadFiles {
    /// The read that follows what the workbench holds (`captions`: lint them
    /// again even if no file changed).
    pub fn after(shared: &Shared, captions: bool) -> Self {
        let files = &shared.files;
        let (shown, compare) = shared.metrics_wanted();
        Self {
            project: shared.project.clone(),
            previous: files.inventory.clone(),
            captions: captions || files.captions.is_none(),
            drafts_changed: files.captions.as_ref().and_then(|r| r.drafts_changed),
            vocabulary_text: files.vocabulary_text.clone(),
            shown,
            compare,
        }
    }
}

/// Reads project.toml and vocabulary.toml again, the dataset, the runs and
/// the shown runs' metrics; the captions are linted again when asked or when
/// the settings, images, captions or drafts changed. A changed project.toml
/// that is valid is what the rest is read with.
pub fn read_files(request: ReadFiles) -> ProjectFiles {
    let ReadFiles { project, previous, captions, drafts_changed, vocabulary_text, shown, compare } = request;
    let (changed, project_error) = match project.reread() {
        Ok(changed) => (changed.map(Box::new), None),
        Err(error) => (None, Some(error.to_string())),
    };
    let project = changed.as_deref().unwrap_or(&project);
    let dataset = project.dataset_dir();
    let inventory = Inventory::read(&dataset, &project.config.caption_extension, Some(&previous));
    let drafts_changed = crate::captions::drafts_changed(&dataset) != drafts_changed;
    let vocabulary = std::fs::read_to_string(crate::captions::vocabulary::Vocabulary::path(&project.root)).ok();
    let settings_changed = changed.is_some() || vocabulary != vocabulary_text;
    let (captions, caption_context) = if captions || settings_changed || inventory != previous || drafts_changed {
        let (report, context) = crate::captions::CaptionReport::build(project);
        (Some(report), context.map(|c| SharedContext(std::sync::Arc::new(c))))
    } else {
        (None, None)
    };
    ProjectFiles {
        inventory,
        runs: list_runs(&project.runs_dir()),
        metrics: shown.as_deref().map(read_metrics),
        compare_metrics: compare.as_deref().map(read_metrics),
        metrics_of: (shown, compare),
        captions,
        caption_context,
        project: changed,
        project_error,
        vocabulary_text: vocabulary,
    }
}

/// Renders the rest of a run's evaluation grid on this thread (inside the
/// compute pool), reporting each cell, then scores it.
fn evaluate_run(
    project: &Project,
    run_dir: &Path,
    sender: &mpsc::UnboundedSender<Done>,
    stop: &AtomicBool,
) -> anyhow::Result<(Box<EvalReport>, Vec<String>)> {
    use crate::evaluate::{plan, render, scoring};
    let plan = plan::Plan::new(project, run_dir, &plan::Overrides::default())?;
    let device = crate::device::default_device();
    crate::device::on_compute_threads(&device, || {
        let mut progress = |p: Progress| {
            let _ = sender.send(Done::EvaluationProgress(p));
            !stop.load(Ordering::Relaxed)
        };
        let mut report = render::evaluate(project, &plan, &device, &mut progress)?;
        let notes = scoring::score_finished(project, &plan, &device, &mut report)?;
        Ok((Box::new(report), notes))
    })
}

/// Asks the work this flag belongs to, if it runs, to stop at its next check.
fn raise(stop: &Option<Arc<AtomicBool>>) {
    if let Some(stop) = stop {
        stop.store(true, Ordering::Relaxed);
    }
}

/// Scans the dataset (rayon inside), after completing a reject or restore
/// cut short last time.
pub fn scan(project: &Project, progress: &(dyn Fn(usize, usize) + Sync)) -> ScanResult {
    let dataset = project.dataset_dir();
    let _ = decisions::recover(&dataset);
    let report = crate::dataset::scan::scan(&dataset, &project.cache_dir(), &project.config, progress);
    ScanResult { report, rejected: decisions::rejected_images(&dataset), kept: Kept::read(&dataset) }
}

/// Carries out a keep/reject/restore. After a keep, the kept list is read
/// back; moved files are seen by the next scan.
fn decide(project: &Project, decision: &Decision) -> Done {
    let dataset = project.dataset_dir();
    let result = decisions::apply(&dataset, decision, &project.config.caption_extension);
    let moved_files = matches!(decision, Decision::Reject(_) | Decision::Restore(_));
    let kept = (!moved_files).then(|| Kept::read(&dataset));
    Done::Decided { result: result.map_err(|error| format!("{error:#}")), kept }
}

/// Exports a checkpoint's LoRA, making the destination's folder when it is
/// missing. A file already there is replaced only when the request says so;
/// the checkpoint itself never is.
pub fn export_checkpoint(request: &ExportRequest) -> Result<(), ExportError> {
    let ExportRequest { source, out, format, title, strip_metadata, overwrite, .. } = request;
    let failed = |why: String| ExportError::Failed(format!("{}: {why}", out.display()));
    if out.is_dir() {
        return Err(failed("is a folder".into()));
    }
    if out.exists() {
        let same = out.canonicalize().ok().zip(source.canonicalize().ok()).is_some_and(|(a, b)| a == b);
        if same {
            return Err(failed("is the checkpoint itself".into()));
        }
        if !overwrite {
            return Err(ExportError::Exists);
        }
    }
    if let Some(folder) = out.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|e| failed(format!("cannot create its folder: {e}")))?;
    }
    let options = ExportOptions { format: *format, title: title.clone(), strip_metadata: *strip_metadata };
    export(source, out, &options).map(drop).map_err(|e| ExportError::Failed(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_beyond_two_at_once_are_skipped_at_once_and_the_rest_come_back() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let shared = Shared::for_tests();
            let mut jobs = Jobs::default();
            let missing = |n: u32| PathBuf::from(format!("/nonexistent/{n}.png"));
            assert!(jobs.start(Effect::Preview(missing(1)), &shared).is_none());
            assert!(jobs.start(Effect::Preview(missing(2)), &shared).is_none());
            let skipped = jobs.start(Effect::Preview(missing(3)), &shared);
            assert!(matches!(skipped, Some(Done::PreviewSkipped(path)) if path == missing(3)));
            // The two started come back (here as files that cannot be read); then a slot is free.
            for _ in 0..2 {
                assert!(matches!(jobs.next().await, Done::Preview(_, Err(_))));
            }
            assert!(jobs.start(Effect::Preview(missing(3)), &shared).is_none());
            assert!(matches!(jobs.start(Effect::Trainer(Command::Stop), &shared), Some(Done::TrainerGone)));
        });
    }

    #[test]
    fn a_captioning_run_without_its_model_folder_ends_in_an_error_that_says_where_models_come_from() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let shared = Shared::for_tests();
            let mut jobs = Jobs::default();
            let start = Effect::StartAutoCaptions { model: "models/none".into(), scope: Default::default() };
            assert!(jobs.start(start, &shared).is_none());
            match jobs.next().await {
                Done::AutoCaptionsEnded(Err(why)) => {
                    assert!(
                        why.contains("no model folder at demo/models/none") && why.contains("huggingface-cli"),
                        "{why}"
                    )
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn an_export_makes_its_folder_and_replaces_a_file_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("step-000100.safetensors");
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-sd15/lora/lora_attn.kohya.safetensors");
        std::fs::copy(&fixture, &source).unwrap();
        let modules = |path: &std::path::Path| crate::model::lora_file::LoraFile::open(path).unwrap().modules.len();
        let request = ExportRequest {
            step: 100,
            source: source.clone(),
            out: dir.path().join("exports/demo-step-100.safetensors"),
            format: crate::model::lora_file::LoraFormat::Kohya,
            title: None,
            strip_metadata: false,
            overwrite: false,
        };
        assert_eq!(export_checkpoint(&request), Ok(()));
        assert_eq!(modules(&request.out), 48);
        std::fs::write(&request.out, b"mine").unwrap();
        assert_eq!(export_checkpoint(&request), Err(ExportError::Exists));
        assert_eq!(std::fs::read(&request.out).unwrap(), b"mine", "not replaced unasked");
        let peft =
            ExportRequest { overwrite: true, format: crate::model::lora_file::LoraFormat::Peft, ..request.clone() };
        assert_eq!(export_checkpoint(&peft), Ok(()));
        assert_eq!(crate::model::lora_file::LoraFile::open(&request.out).unwrap().format, peft.format);
        let onto_itself = ExportRequest { out: source.clone(), overwrite: true, ..request.clone() };
        assert!(
            matches!(export_checkpoint(&onto_itself), Err(ExportError::Failed(why)) if why.contains("the checkpoint itself"))
        );
        assert_eq!(std::fs::read(&source).unwrap(), std::fs::read(&fixture).unwrap());
        let folder = ExportRequest { out: dir.path().join("exports"), overwrite: true, ..request };
        assert!(matches!(export_checkpoint(&folder), Err(ExportError::Failed(why)) if why.contains("is a folder")));
    }
}
