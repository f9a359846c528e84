//! `easel train`: a run without the workbench. On a terminal, one progress
//! line redrawn in place (step, loss, smoothed loss, lr, it/s, ETA) with
//! events printed above it; in a log (stdout not a TTY), a plain line every
//! few steps. Ctrl-C, SIGTERM or SIGHUP stops the run with a checkpoint,
//! and the command then exits as that signal's 128 + n. Images left out
//! because only an unreviewed draft describes them are counted first. The
//! overfit alarm is printed as a warning line when it first sounds; a
//! summary line closes every run. Output that cannot be written (a closed
//! log pipe) is dropped: training goes on to its end.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::overfit::overfit_alarm;
use super::records::StepMetrics;
use super::runs::{RunMetrics, read_metrics};
use super::smoothing::Ema;
use super::trainer::{Command, Event, TrainOptions, spawn};
use crate::captions::drafts::unreviewed_uncaptioned;
use crate::console::{duration, on_stop_signal};
use crate::dataset::require_images;
use crate::project::Project;

pub struct HeadlessOptions {
    pub train: TrainOptions,
    /// Print sample images below the progress (viuer) where the terminal can.
    pub show_samples: bool,
    /// Without a terminal, print a line every this many steps.
    pub report_every: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub lora: PathBuf,
    /// The signal that stopped it before its last step, if one did.
    pub stopped_by: Option<i32>,
}

/// The progress line: bar, step/total, loss, smoothed loss, lr, it/s, ETA.
/// `start_step` is where this process took the run up (past 0 after a resume
/// or a roll-back): `elapsed_seconds` counts only the time since then.
pub fn progress_line(m: &StepMetrics, start_step: u64, smoothed: f64, width: usize) -> String {
    let per_second = m.steps_per_second_since(start_step);
    let eta = (m.total - m.step) as f64 / per_second.max(1e-9);
    let filled = (width as u64 * m.step / m.total.max(1)) as usize;
    format!(
        "[{}{}] {}/{} loss {:.4} (smoothed {:.4}) lr {:.2e} {:.2} it/s ETA {}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        m.step,
        m.total,
        m.loss,
        smoothed,
        m.lr,
        per_second,
        duration(eta)
    )
}

/// The overfit warning, when the alarm first sounds or names another best
/// checkpoint than last time (`warned`: the one last named), so a log is not
/// repeated at every validation.
fn overfit_warning(history: &RunMetrics, warned: &mut Option<Option<u64>>) -> Option<String> {
    let alarm = overfit_alarm(&history.loss, &history.validation, &history.checkpoints)?;
    if *warned == Some(alarm.best_checkpoint) {
        return None;
    }
    *warned = Some(alarm.best_checkpoint);
    Some(format!("warning: {}", alarm.message()))
}

/// The line that closes a run: where it ended, the final smoothed training
/// loss, the best validation loss and the last one, and the LoRA.
fn summary_line(
    how: &str,
    step: u64,
    total: u64,
    smoothed: Option<f64>,
    validation: &[(u64, f64)],
    lora: &Path,
) -> String {
    let training =
        smoothed.map_or_else(|| "no training loss".to_string(), |loss| format!("training loss {loss:.4} (smoothed)"));
    let best = validation.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let validation = match (best, validation.last()) {
        (Some((best_step, best)), Some((last_step, last))) => {
            format!("best validation loss {best:.4} at step {best_step}, last {last:.4} at step {last_step}")
        }
        _ => "no validation loss".to_string(),
    };
    format!("{how} at step {step}/{total}: {training}, {validation}; LoRA {}", lora.display())
}

/// The warning that images are left out because their only text is a draft
/// awaiting review (`None` when none is), said before the model loads.
pub fn drafts_warning(project: &Project) -> Result<Option<String>> {
    let left_out = unreviewed_uncaptioned(&project.dataset_dir(), &project.config.caption_extension)?.len();
    let which = match left_out {
        0 => return Ok(None),
        1 => "1 image is left out: its draft awaits".to_string(),
        n => format!("{n} images are left out: their drafts await"),
    };
    Ok(Some(format!("warning: {which} review (easel captions {} drafts)", project.root.display())))
}

/// What pruning deleted, in words: "Pruned the checkpoints of steps 100, 200 (keep_checkpoints = 3)".
pub fn pruned_line(steps: &[u64], keep: u32) -> String {
    let list: Vec<String> = steps.iter().map(u64::to_string).collect();
    let which = if steps.len() == 1 { "checkpoint of step" } else { "checkpoints of steps" };
    format!("Pruned the {which} {} (keep_checkpoints = {keep})", list.join(", "))
}

pub fn run(project: Project, options: HeadlessOptions) -> Result<Ended> {
    let tty = std::io::stdout().is_terminal();
    // Said before the model loads, which can take minutes.
    require_images(&project.dataset_dir(), &project.config.caption_extension)?;
    let mut out = std::io::stdout().lock();
    if let Some(warning) = drafts_warning(&project)? {
        let _ = writeln!(out, "{warning}");
    }
    let handle = spawn(project, options.train);
    // Stopping saves a checkpoint.
    let commands = handle.commands.clone();
    let signal = on_stop_signal(move || {
        let _ = commands.send(Command::Stop);
    });
    let mut ema = Ema::new(0.9);
    let (mut start_step, mut total, mut stopped) = (0, 0, false);
    let mut bar = String::new();
    // What the overfit alarm needs: the run's losses and checkpoints so far.
    let mut history = RunMetrics::default();
    let mut warned = None;
    // On a terminal, an event line replaces the progress line, which is then redrawn.
    let say = |out: &mut std::io::StdoutLock, bar: &str, line: String| {
        if tty {
            let _ = write!(out, "\r\x1b[2K{line}\n{bar}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    };
    for event in handle.events.iter() {
        match event {
            Event::Started {
                run_id,
                dir,
                start_step: start,
                total: steps,
                train_images,
                validation_images,
                skipped,
            } => {
                (start_step, total) = (start, steps);
                // A resumed run's log already holds its history up to `start_step`,
                // which the smoothed loss goes on from.
                history = read_metrics(&dir);
                for (_, loss) in &history.loss {
                    ema.push(*loss);
                }
                let from = match &history.resumed_from {
                    // A roll-back's new run: its log was copied up to the checkpoint it starts from.
                    Some((source, step)) if *step == start_step => {
                        format!(", a new run continuing run {source} from its checkpoint at step {step}")
                    }
                    _ if start_step > 0 => format!(", resuming at step {start_step}"),
                    _ => String::new(),
                };
                say(
                    &mut out,
                    &bar,
                    format!(
                        "run {run_id} in {}: {train_images} training and {validation_images} validation images, {}{from}",
                        dir.display(),
                        crate::words::counted(total as usize, "step")
                    ),
                );
                for (path, why) in &skipped {
                    say(&mut out, &bar, format!("  skipped {}: {why}", path.display()));
                }
            }
            Event::Preparing { what, done, total } if tty => {
                let _ = write!(out, "\r\x1b[2K{what} {done}/{total}");
                let _ = out.flush();
            }
            Event::Preparing { .. } => {}
            Event::Step(metrics) => {
                let smoothed = ema.push(metrics.loss);
                history.loss.push((metrics.step, metrics.loss));
                if tty {
                    bar = progress_line(&metrics, start_step, smoothed, 24);
                    let _ = write!(out, "\r\x1b[2K{bar}");
                    let _ = out.flush();
                } else if metrics.step.is_multiple_of(options.report_every.max(1)) || metrics.step == metrics.total {
                    say(
                        &mut out,
                        &bar,
                        format!(
                            "step {}/{} loss {:.4} smoothed {:.4} lr {:.2e} grad_norm {:.3} {:.2} img/s elapsed {}",
                            metrics.step,
                            metrics.total,
                            metrics.loss,
                            smoothed,
                            metrics.lr,
                            metrics.grad_norm,
                            metrics.samples_per_second,
                            duration(metrics.elapsed_seconds)
                        ),
                    );
                }
            }
            Event::Validation { step, loss } => {
                say(&mut out, &bar, format!("step {step}: validation loss {loss:.4}"));
                history.validation.push((step, loss));
                if let Some(warning) = overfit_warning(&history, &mut warned) {
                    say(&mut out, &bar, warning);
                }
            }
            Event::Samples { step, paths } => {
                say(
                    &mut out,
                    &bar,
                    format!(
                        "step {step}: {} in {}",
                        crate::words::counted(paths.len(), "sample"),
                        paths.first().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default()
                    ),
                );
                if options.show_samples && tty {
                    let _ = write!(out, "\r\x1b[2K");
                    let _ = out.flush();
                    for path in &paths {
                        let config = viuer::Config {
                            width: Some(16),
                            height: Some(8),
                            absolute_offset: false,
                            ..Default::default()
                        };
                        if let Ok(image) = image::open(path) {
                            let _ = viuer::print(&image, &config);
                        }
                    }
                    let _ = write!(out, "{bar}");
                }
            }
            Event::Checkpoint { step, path } => {
                say(&mut out, &bar, format!("step {step}: checkpoint {}", path.display()));
                history.checkpoints.push(step);
                if let Some(warning) = overfit_warning(&history, &mut warned) {
                    say(&mut out, &bar, warning);
                }
            }
            Event::Pruned { steps, keep } => say(&mut out, &bar, pruned_line(&steps, keep)),
            Event::Paused { step } => say(&mut out, &bar, format!("paused at step {step}")),
            Event::Resumed { step } => say(&mut out, &bar, format!("resumed at step {step}")),
            Event::Finished { step, lora, stopped: early } => {
                stopped = early;
                let how = if stopped { "stopped" } else { "finished" };
                say(&mut out, "", summary_line(how, step, total, ema.get(), &history.validation, &lora));
            }
            Event::Error(_) => {}
        }
    }
    if tty {
        let _ = writeln!(out);
    }
    let lora = handle.thread.join().map_err(|_| anyhow!("the trainer thread panicked"))??;
    Ok(Ended { lora, stopped_by: if stopped { signal.received() } else { None } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drafts_warning_counts_uncaptioned_images_whose_draft_awaits_review() {
        use crate::captions::drafts::{Draft, update};
        use crate::captions::{normalize::Rules, vocabulary::Vocabulary};
        let dir = tempfile::tempdir().unwrap();
        crate::project::init(dir.path(), Some("test"), "ohwx").unwrap();
        let project = Project::open(dir.path()).unwrap();
        assert_eq!(drafts_warning(&project).unwrap(), None);
        let rules = Rules::new(&Vocabulary::default(), "ohwx").unwrap();
        update(&project.dataset_dir(), |drafts| {
            for image in ["a.png", "b.png"] {
                drafts.insert(Draft::new(image.into(), "a mug", "test", &rules));
            }
            Ok(())
        })
        .unwrap();
        let warning = drafts_warning(&project).unwrap().unwrap();
        let expected = format!(
            "warning: 2 images are left out: their drafts await review (easel captions {} drafts)",
            dir.path().display()
        );
        assert_eq!(warning, expected);
    }

    #[test]
    fn the_rate_counts_only_the_steps_this_process_trained() {
        // Resumed at step 100: 50 steps in 10 s is 5 it/s, and the 50 left take 10 s more.
        let metrics = StepMetrics {
            step: 150,
            total: 200,
            loss: 0.1,
            lr: 1e-4,
            elapsed_seconds: 10.0,
            epoch: 0,
            grad_norm: 0.0,
            memory_mib: None,
            samples_per_second: 10.0,
        };
        let line = progress_line(&metrics, 100, 0.1, 4);
        assert!(line.ends_with(" 5.00 it/s ETA 0:10"), "{line}");
        assert!(progress_line(&metrics, 0, 0.1, 4).ends_with(" 15.00 it/s ETA 0:03"), "a run started here");
    }

    #[test]
    fn the_summary_line_names_the_losses_and_the_lora() {
        let lora = Path::new("runs/r1/demo.safetensors");
        let validation = [(25, 0.30), (50, 0.21), (75, 0.25)];
        assert_eq!(
            summary_line("finished", 80, 80, Some(0.123456), &validation, lora),
            "finished at step 80/80: training loss 0.1235 (smoothed), best validation loss 0.2100 at step 50, \
             last 0.2500 at step 75; LoRA runs/r1/demo.safetensors"
        );
        assert_eq!(
            summary_line("stopped", 0, 80, None, &[], lora),
            "stopped at step 0/80: no training loss, no validation loss; LoRA runs/r1/demo.safetensors"
        );
    }

    #[test]
    fn the_overfit_warning_is_printed_once_per_best_checkpoint() {
        let mut history = RunMetrics {
            loss: (1..=800).map(|step| (step, 1.0 / step as f64)).collect(),
            validation: vec![(100, 0.3), (200, 0.2), (300, 0.15), (400, 0.12), (500, 0.13), (600, 0.14)],
            checkpoints: vec![300],
            ..RunMetrics::default()
        };
        let mut warned = None;
        assert_eq!(overfit_warning(&history, &mut warned), None, "two rises");
        history.validation.push((700, 0.16));
        let warning = overfit_warning(&history, &mut warned).expect("the alarm");
        assert!(warning.starts_with("warning: validation loss has risen 3 validations in a row since step 400"));
        assert!(warning.contains("the best checkpoint so far is step 300"), "{warning}");
        history.validation.push((800, 0.17));
        assert_eq!(overfit_warning(&history, &mut warned), None, "the same best checkpoint");
        // The loss falls to a new best, saved, then rises again: the new checkpoint is named.
        history.loss = (1..=1200).map(|step| (step, 1.0 / step as f64)).collect();
        history.validation.push((900, 0.10));
        history.checkpoints.push(900);
        assert_eq!(overfit_warning(&history, &mut warned), None, "falling again");
        history.validation.extend([(1000, 0.11), (1100, 0.12), (1200, 0.13)]);
        assert!(overfit_warning(&history, &mut warned).unwrap().contains("is step 900 (val 0.1000)"));
    }
}
