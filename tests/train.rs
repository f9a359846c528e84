//! Training on the built-in tiny model and the demo dataset: the loss falls
//! (and does not at learning rate 0), a run killed with SIGKILL resumes to
//! the same losses as an uninterrupted one, its LoRA changes what
//! `easel generate` draws, a non-finite loss stops the run by name, a
//! roll-back trains on from a checkpoint in a new run, every run ends with a
//! summary line, Ctrl-C stops with a checkpoint and exit status 130, and a
//! closed output pipe does not stop training.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::demo_copy;
use easel::project::Project;
use easel::train::read_metrics;
use easel::train::records::MetricsRecord;
use easel::train::trainer::{self, Event, TrainOptions};

mod common;

/// A demo copy with a small, quick training setup (64 px, constant lr).
fn project(steps: u32, save_every: u32) -> tempfile::TempDir {
    let dir = demo_copy();
    let config = format!(
        "name = \"demo\"\ndataset = \"dataset\"\ntrigger = \"zeltmug\"\n\n[model]\nbase = \"builtin:tiny\"\n\n\
         [lora]\nrank = 4\nalpha = 4.0\n\n[train]\nsteps = {steps}\nbatch_size = 2\nlearning_rate = 1e-3\n\
         schedule = \"constant\"\nwarmup_steps = 0\nseed = 42\nresolution = 64\nprecision = \"f32\"\n\
         save_every = {save_every}\nsample_every = 0\nvalidate_every = 0\nvalidation_fraction = 0.1\n"
    );
    std::fs::write(dir.path().join("project.toml"), config).unwrap();
    dir
}

/// Trains in this process and returns the loss of every step.
fn losses(dir: &Path, learning_rate: f64) -> Vec<f64> {
    let project = Project::open(dir).unwrap();
    let (_commands, command_rx) = std::sync::mpsc::channel();
    let (events, event_rx) = std::sync::mpsc::channel();
    let options = TrainOptions { learning_rate: Some(learning_rate), ..TrainOptions::default() };
    trainer::run(&project, &options, &command_rx, &events).unwrap();
    drop(events);
    event_rx.iter().filter_map(|e| if let Event::Step(m) = e { Some(m.loss) } else { None }).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn the_loss_falls_and_does_not_at_learning_rate_zero() {
    let (trained, baseline) = (project(200, 0), project(200, 0));
    let (trained, baseline) = (losses(trained.path(), 1e-3), losses(baseline.path(), 0.0));
    assert_eq!((trained.len(), baseline.len()), (200, 200));
    let fifth = 40;
    let ratio = |l: &[f64]| mean(&l[200 - fifth..]) / mean(&l[..fifth]);
    let (learned, flat) = (ratio(&trained), ratio(&baseline));
    eprintln!("mean loss, last 20 % / first 20 %: lr 1e-3 → {learned:.3}, lr 0 → {flat:.3}");
    // Same seed: both runs see the same batches, noise and timesteps, so the
    // baseline is exactly what the untrained model scores on them.
    assert!(learned < 0.95, "the loss did not fall clearly: ratio {learned}");
    assert!(flat > 0.97, "at lr 0 the 'learning' criterion should fail, ratio {flat}");
    assert!(mean(&trained[200 - fifth..]) < 0.95 * mean(&baseline[200 - fifth..]));
}

fn easel(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
    command.args(args).stdin(Stdio::null());
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("run easel")
}

fn run_folder(project: &Path) -> PathBuf {
    let runs: Vec<_> = std::fs::read_dir(project.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// (step, loss) of every step line, checking each line is whole JSON.
fn logged_losses(run: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    text.lines()
        .map(|line| MetricsRecord::parse(line).unwrap_or_else(|| panic!("bad line {line:?}")))
        .filter_map(|record| if let MetricsRecord::Step(m) = record { Some((m.step, m.loss)) } else { None })
        .collect()
}

#[test]
fn a_run_killed_mid_way_resumes_to_the_same_losses() {
    let uninterrupted = project(30, 10);
    let done = output(easel(&["train", uninterrupted.path().to_str().unwrap()]));
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let expected = logged_losses(&run_folder(uninterrupted.path()));
    assert_eq!(expected.len(), 30);

    let killed = project(30, 10);
    // Held after step 15 (a drill), so the kill lands between two checkpoints however slow the machine.
    let mut child = easel(&["train", killed.path().to_str().unwrap()])
        .env("EASEL_FAULT_HOLD_AFTER_STEP", "15")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let runs = killed.path().join("runs");
        let logged = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut r| r.next())
            .map(|e| e.unwrap().path())
            // The run folder exists a moment before its metrics file does.
            .filter(|run| run.join("metrics.jsonl").is_file())
            .map(|run| logged_losses(&run).len());
        if logged.is_some_and(|n| n >= 15) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the run never reached step 15");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run = run_folder(killed.path());
    let before = logged_losses(&run); // every line whole JSON, even after the kill
    assert_eq!(before.len(), 15, "steps logged before the kill");
    let checkpoints: Vec<_> =
        std::fs::read_dir(run.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(checkpoints.iter().any(|n| n == "step-000010.safetensors"), "{checkpoints:?}");

    let resumed = output(easel(&["train", killed.path().to_str().unwrap(), "--resume"]));
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(stdout.contains("resuming at step"), "{stdout}");
    let after = logged_losses(&run);
    assert_eq!(
        after.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>(),
        "each step logged once"
    );
    let worst = after.iter().zip(&expected).map(|((_, a), (_, b))| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("resumed vs uninterrupted: max |Δ loss| over 30 steps {worst:e}");
    assert!(worst < 1e-4, "resumed losses differ by {worst}");

    // The run's LoRA changes what the base model draws.
    let draw = |lora: Option<&Path>| {
        let out = killed.path().join("draw.png");
        let latents = killed.path().join("draw.safetensors");
        let mut args = vec![
            "generate",
            "--project",
            killed.path().to_str().unwrap(),
            "--prompt",
            "zeltmug on a table",
            "--steps",
            "4",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--save-latents",
            latents.to_str().unwrap(),
        ];
        let lora_arg = lora.map(|p| p.to_str().unwrap().to_string());
        match &lora_arg {
            Some(lora) => args.extend(["--lora", lora.as_str()]),
            None => args.push("--no-lora"),
        }
        let result = output(easel(&args));
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        candle_core::safetensors::load(&latents, &candle_core::Device::Cpu).unwrap().remove("latents").unwrap()
    };
    let base = draw(None);
    let tuned = draw(Some(&run.join("demo.safetensors")));
    let change = common::max_abs_diff(&base, &tuned);
    eprintln!("easel generate with the trained LoRA vs without: max |Δ latents| {change:e}");
    assert!(change > 1e-3, "the trained LoRA changed nothing");
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = project(30, 5);
    let mut command = easel(&["train", dir.path().to_str().unwrap()]);
    command.env("EASEL_FAULT_NAN_STEP", "12");
    let result = output(command);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("the loss became NaN at step 12 (injected by EASEL_FAULT_NAN_STEP)"), "{stderr}");
    assert!(stderr.contains("injected faults (a test drill)"), "the drill is announced: {stderr}");
    assert!(stderr.contains("last good checkpoint is step 10"), "{stderr}");
    let run = run_folder(dir.path());
    assert!(run.join("checkpoints/step-000010.safetensors").is_file());
    assert_eq!(logged_losses(&run).len(), 11, "steps before the failure stay logged");
}

#[test]
fn commands_pause_resume_sample_save_and_stop_a_running_trainer() {
    let dir = project(500, 0);
    let config = std::fs::read_to_string(dir.path().join("project.toml")).unwrap();
    std::fs::write(
        dir.path().join("project.toml"),
        format!("{config}\n[[samples]]\nprompt = \"zeltmug\"\nsteps = 2\n"),
    )
    .unwrap();
    let handle = trainer::spawn(Project::open(dir.path()).unwrap(), TrainOptions::default());
    let next = |what: &str| {
        handle
            .events
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no event while waiting for {what}"))
    };
    let wait = |what: &str, matches: &dyn Fn(&Event) -> bool| loop {
        let event = next(what);
        if let Event::Error(error) = &event {
            panic!("trainer failed: {error}");
        }
        if matches(&event) {
            return event;
        }
    };
    wait("the first step", &|e| matches!(e, Event::Step(_)));
    handle.commands.send(trainer::Command::Pause).unwrap();
    let Event::Paused { step: paused_at } = wait("pause", &|e| matches!(e, Event::Paused { .. })) else {
        unreachable!()
    };
    // Paused: no steps for a while, but sample-now and save-now still work.
    handle.commands.send(trainer::Command::SampleNow).unwrap();
    handle.commands.send(trainer::Command::SaveNow).unwrap();
    let Event::Samples { step, paths } = next("samples") else { panic!("expected samples while paused") };
    assert_eq!(step, paused_at);
    assert!(paths.iter().all(|p| p.is_file()));
    let Event::Checkpoint { step, path } = next("checkpoint") else { panic!("expected a checkpoint while paused") };
    assert_eq!(step, paused_at);
    assert!(path.is_file());
    // Give a running step time to show itself, then check the step counter did not move.
    std::thread::sleep(Duration::from_millis(300));
    handle.commands.send(trainer::Command::Resume).unwrap();
    let Event::Resumed { step } = next("resume") else { panic!("something happened while paused") };
    assert_eq!(step, paused_at, "the step counter moved while paused");
    let Event::Step(first) = wait("a step after resuming", &|e| matches!(e, Event::Step(_))) else { unreachable!() };
    assert_eq!(first.step, paused_at + 1, "every step is logged (log_every 1)");
    handle.commands.send(trainer::Command::Stop).unwrap();
    let Event::Finished { step, lora, stopped } = wait("the end", &|e| matches!(e, Event::Finished { .. })) else {
        unreachable!()
    };
    assert!(stopped && step > paused_at && step < 500, "stopped {stopped} at {step}");
    assert!(lora.is_file());
    assert_eq!(handle.thread.join().unwrap().unwrap(), lora);
}

/// Every file under `dir` with its bytes, by path.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    found.sort();
    found
}

#[test]
fn a_roll_back_trains_on_from_a_checkpoint_in_a_new_run_and_leaves_the_old_one_alone() {
    let dir = project(4, 2);
    let path = dir.path().to_str().unwrap();
    let done = output(easel(&["train", path]));
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let original = run_folder(dir.path());
    let id = original.file_name().unwrap().to_str().unwrap().to_string();
    assert!(original.join("checkpoints/step-000002.state.safetensors").is_file());
    let before = files(&original);

    // A run or step that is not there, or no step at all: a clear error, and no run made.
    for (from, error) in [
        ("nope@2".to_string(), format!("no run `nope` in {}/runs (its runs: {id})", path)),
        (format!("{id}@3"), format!("run {id} has no checkpoint at step 3 (its checkpoints: 2, 4)")),
        (id.clone(), format!("`{id}`: expected RUN@STEP")),
    ] {
        let refused = output(easel(&["train", path, "--from", &from]));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains(&error), "--from {from}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(dir.path().join("runs")).unwrap().count(), 1);

    let rolled = output(easel(&["train", path, "--from", &format!("{id}@2")]));
    let stdout = String::from_utf8_lossy(&rolled.stdout);
    assert!(rolled.status.success(), "{}", String::from_utf8_lossy(&rolled.stderr));
    assert!(stdout.contains(&format!("a new run continuing run {id} from its checkpoint at step 2")), "{stdout}");
    let new = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|item| item.unwrap().path())
        .find(|run| *run != original)
        .expect("a new run");
    assert_eq!(files(&original), before, "the original run's files are byte for byte as they were");

    // It starts from checkpoint 2's LoRA and optimizer state: its copy of them
    // is the original's, and steps 3 and 4 train as they did the first time.
    for file in ["step-000002.safetensors", "step-000002.state.safetensors"] {
        let read = |run: &Path| std::fs::read(run.join("checkpoints").join(file)).unwrap();
        assert!(read(&new) == read(&original), "{file} differs");
    }
    let (first, second) = (logged_losses(&original), logged_losses(&new));
    assert_eq!(
        second.iter().map(|(step, _)| *step).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "the history up to 2 comes along"
    );
    assert_eq!(second[..2], first[..2]);
    let worst = second[2..].iter().zip(&first[2..]).map(|((_, a), (_, b))| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("rolled back at 2 vs the original: max |Δ loss| over steps 3-4 {worst:e}");
    assert!(worst < 1e-4, "steps after the roll-back differ by {worst}");
    assert_eq!(read_metrics(&new).resumed_from, Some((id, 2)));
    assert!(new.join("demo.safetensors").is_file() && new.join("checkpoints/step-000004.safetensors").is_file());
}

#[test]
fn images_whose_only_text_is_an_unreviewed_draft_are_counted_and_left_out() {
    use easel::captions::drafts::{Draft, update};
    let dir = project(2, 0);
    let dataset = dir.path().join("dataset");
    let rules = easel::captions::CaptionContext::open(&Project::open(dir.path()).unwrap()).unwrap().rules;
    for name in ["zeltmug_01", "zeltmug_02"] {
        std::fs::remove_file(dataset.join(format!("{name}.txt"))).unwrap();
    }
    update(&dataset, |drafts| {
        for name in ["zeltmug_01.png", "zeltmug_02.png"] {
            drafts.insert(Draft::new(name.into(), "a teal mug on a table", "test", &rules));
        }
        Ok(())
    })
    .unwrap();
    let result = output(easel(&["train", dir.path().to_str().unwrap()]));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let warning = format!(
        "warning: 2 images are left out: their drafts await review (easel captions {} drafts)",
        dir.path().display()
    );
    assert!(stdout.starts_with(&warning), "said before training starts: {stdout}");
    assert!(stdout.contains("16 training and 2 validation images"), "18 of 20 used: {stdout}");
    assert_eq!(stdout.matches("no caption: its draft awaits review").count(), 2, "{stdout}");
}

/// Trains `project` as given in this process; the events it reported.
fn train_events(project: &Project, options: &TrainOptions) -> Vec<Event> {
    let (_commands, command_rx) = std::sync::mpsc::channel();
    let (events, event_rx) = std::sync::mpsc::channel();
    trainer::run(project, options, &command_rx, &events).unwrap();
    drop(events);
    event_rx.iter().collect()
}

#[test]
fn a_run_trains_with_and_freezes_exactly_the_settings_it_was_configured_from() {
    let dir = project(3, 0);
    // The workbench read project.toml, and it changed on disk after that (the
    // workbench has not re-read it yet): the run is what the workbench showed.
    let project = Project::open(dir.path()).unwrap();
    let file = dir.path().join("project.toml");
    let edited = project.source.replace("steps = 3\n", "steps = 300\n");
    std::fs::write(&file, &edited).unwrap();
    let events = train_events(&project, &TrainOptions::default());
    let run = run_folder(dir.path());
    let frozen = std::fs::read_to_string(run.join("project.toml")).unwrap();
    let steps = events.iter().filter(|e| matches!(e, Event::Step(_))).count();
    assert_eq!(steps, 3, "trained with the settings it was given");
    assert_eq!(frozen, project.source, "froze the text those settings were parsed from");

    // An override of the steps is written into the copy, the rest byte for byte.
    std::fs::remove_dir_all(dir.path().join("runs")).unwrap();
    let project = Project::open(dir.path()).unwrap();
    let events = train_events(&project, &TrainOptions { steps: Some(2), ..TrainOptions::default() });
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Step(_))).count(), 2);
    let frozen = std::fs::read_to_string(run_folder(dir.path()).join("project.toml")).unwrap();
    assert_eq!(frozen, edited.replace("steps = 300\n", "steps = 2\n"));
}

#[test]
fn pruning_keeps_the_checkpoint_a_roll_back_started_from_and_says_what_it_pruned() {
    let dir = project(4, 1);
    let file = dir.path().join("project.toml");
    let config = std::fs::read_to_string(&file).unwrap() + "keep_checkpoints = 2\n";
    std::fs::write(&file, config).unwrap();
    let path = dir.path().to_str().unwrap();
    let first = output(easel(&["train", path]));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let original = run_folder(dir.path());
    let id = original.file_name().unwrap().to_str().unwrap().to_string();
    let steps =
        |run: &Path| easel::train::run_dir::RunDir { id: String::new(), dir: run.to_path_buf() }.checkpoint_steps();
    assert_eq!(steps(&original), [3, 4]);

    // A roll-back from step 3, then the original run continued: step 3 stays.
    let rolled = output(easel(&["train", path, "--from", &format!("{id}@3")]));
    assert!(rolled.status.success(), "{}", String::from_utf8_lossy(&rolled.stderr));
    let resumed = output(easel(&["train", path, "--resume", &id, "--steps", "6"]));
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(steps(&original), [3, 5, 6], "the roll-back's source is kept: {stdout}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("Pruned the checkpoint of step 1 (keep_checkpoints = 2)"));
    assert!(stdout.contains("Pruned the checkpoint of step 4 (keep_checkpoints = 2)"), "{stdout}");
    let frozen = std::fs::read_to_string(original.join("project.toml")).unwrap();
    assert!(frozen.contains("steps = 6\n"), "the run records that it was extended: {frozen}");
}

#[test]
fn training_leaves_out_what_the_scan_calls_too_small() {
    let dir = project(1, 0);
    // zeltmug_19 is 96×96: too small at 128 px, as the scan says.
    let file = dir.path().join("project.toml");
    let config = std::fs::read_to_string(&file).unwrap().replace("resolution = 64", "resolution = 128");
    std::fs::write(&file, config).unwrap();
    let scan = output(easel(&["scan", dir.path().to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&scan.stdout).contains("too small: short side 96 px < 128"));
    let result = output(easel(&["train", dir.path().to_str().unwrap()]));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("zeltmug_19.png: too small: short side 96 px < 128"), "{stdout}");
    assert!(stdout.contains("17 training and 2 validation images"), "19 of 20 used: {stdout}");
}

/// The closing line of a run: "finished at step …" or "stopped at step …".
fn summary_line<'a>(stdout: &'a str, how: &str) -> &'a str {
    let start = format!("{how} at step ");
    stdout.lines().find(|line| line.starts_with(&start)).unwrap_or_else(|| panic!("no summary line: {stdout}"))
}

#[test]
fn a_finished_run_ends_with_a_summary_line_and_exit_status_0() {
    let dir = project(4, 0);
    let config = std::fs::read_to_string(dir.path().join("project.toml")).unwrap();
    std::fs::write(dir.path().join("project.toml"), config.replace("validate_every = 0", "validate_every = 2"))
        .unwrap();
    let done = output(easel(&["train", dir.path().to_str().unwrap()]));
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    let stdout = String::from_utf8_lossy(&done.stdout);
    let run = run_folder(dir.path());
    let history = read_metrics(&run);
    let mut ema = easel::train::smoothing::Ema::new(0.9);
    let smoothed = history.loss.iter().map(|(_, loss)| ema.push(*loss)).last().unwrap();
    let (best_step, best) = history.validation.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let (last_step, last) = *history.validation.last().unwrap();
    let expected = format!(
        "finished at step 4/4: training loss {smoothed:.4} (smoothed), best validation loss {best:.4} at step \
         {best_step}, last {last:.4} at step {last_step}; LoRA {}",
        run.join("demo.safetensors").display()
    );
    assert_eq!(summary_line(&stdout, "finished"), expected, "{stdout}");
    assert_eq!(stdout.lines().last(), Some(expected.as_str()), "the summary closes the output");
}

#[test]
fn ctrl_c_stops_with_a_checkpoint_a_summary_line_and_exit_status_130() {
    use std::io::{BufRead, BufReader, Read};
    let dir = project(5000, 0);
    let mut child = easel(&["train", dir.path().to_str().unwrap(), "--report-every", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while !seen.last().is_some_and(|line: &String| line.starts_with("step ")) {
        let line = lines.next().unwrap_or_else(|| panic!("the run ended before a step: {seen:?}")).unwrap();
        seen.push(line);
    }
    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let stdout = [seen, rest].concat().join("\n");
    assert_eq!(status.code(), Some(130), "SIGINT's shell status: {status:?}\n{stdout}\n{stderr}");
    let summary = summary_line(&stdout, "stopped");
    let step: u64 = summary["stopped at step ".len()..].split('/').next().unwrap().parse().unwrap();
    assert!(step > 0 && step < 5000, "{summary}");
    assert!(summary.starts_with(&format!("stopped at step {step}/5000: training loss ")), "{summary}");
    assert!(summary.contains("(smoothed), no validation loss;"), "{summary}");
    let run = run_folder(dir.path());
    assert!(summary.ends_with(&format!("; LoRA {}", run.join("demo.safetensors").display())), "{summary}");
    assert!(run.join(format!("checkpoints/step-{step:06}.safetensors")).is_file(), "a checkpoint at the stop step");
    assert!(run.join("demo.safetensors").is_file());
}

#[test]
fn a_closed_output_pipe_does_not_stop_training() {
    use std::os::unix::process::ExitStatusExt;
    let dir = project(4, 0);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = easel(&["train", dir.path().to_str().unwrap(), "--report-every", "1"]);
    command.stdout(writer);
    let done = output(command);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!((done.status.code(), done.status.signal()), (Some(0), None), "{stderr}");
    let run = run_folder(dir.path());
    assert!(run.join("demo.safetensors").is_file(), "the run went on to its end");
    assert_eq!(logged_losses(&run).len(), 4);
}
