//! The real binary in a pseudo-terminal: switch panes, open help, quit, and
//! check what the screen shows and that the terminal is given back (raw mode
//! off, main screen back) on every way out.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, ExitStatus, MasterPty, PtySize, SlavePty, native_pty_system};

const TIMEOUT: Duration = Duration::from_secs(30);

fn size(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a terminal side is never zero")
}

struct Session {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    // Held open so the terminal's settings can still be read after the child exits.
    _slave: Box<dyn SlavePty + Send>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    output: Arc<Mutex<Vec<u8>>>,
    project: tempfile::TempDir,
}

mod common;

impl Session {
    fn start(env: &[(&str, &str)]) -> Self {
        Self::start_in(common::demo_copy(), env)
    }

    fn start_in(project: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let pair =
            native_pty_system().openpty(PtySize { rows: 24, cols: 80, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_easel"));
        command.arg(project.path());
        command.env("TERM", "xterm-256color");
        // vt100 does not answer terminal queries: draw images with half-blocks.
        command.env("EASEL_IMAGES", "halfblocks");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pair.slave.spawn_command(command).unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(size(24), size(80), 0)));
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pair.master.try_clone_reader().unwrap();
        let (screen_feed, output_feed) = (screen.clone(), output.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                screen_feed.lock().unwrap().process(&buffer[..n]);
                output_feed.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        let writer = pair.master.take_writer().unwrap();
        Self { child, master: pair.master, _slave: pair.slave, writer, screen, output, project }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `needle`; returns the screen.
    fn wait_for(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let contents = self.contents();
            if contents.contains(needle) {
                return contents;
            }
            assert!(start.elapsed() < TIMEOUT, "timed out waiting for {needle:?}; the screen shows:\n{contents}");
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn send(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader catch the last bytes written before exit.
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            assert!(start.elapsed() < TIMEOUT, "easel did not exit; the screen shows:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Whether the terminal is in canonical mode with echo, as a shell expects.
    fn terminal_is_cooked(&self) -> bool {
        let fd = self.master.as_raw_fd().expect("unix pty");
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut termios) }, 0);
        termios.c_lflag & libc::ICANON != 0 && termios.c_lflag & libc::ECHO != 0
    }

    fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn assert_restored(&self) {
        assert!(self.terminal_is_cooked(), "raw mode was left on");
        assert!(!self.screen.lock().unwrap().screen().alternate_screen(), "still on the alternate screen");
        let output = self.output_text();
        let entered = output.find("\x1b[?1049h").expect("entered the alternate screen");
        let left = output.rfind("\x1b[?1049l").expect("left the alternate screen");
        assert!(left > entered);
        assert!(output[left..].contains("\x1b[?25h"), "cursor not shown again");
    }

    /// The Train pane, then `s`: waits until the run trains.
    fn start_training(&mut self) {
        self.wait_for("1 Dataset");
        self.send("3");
        self.wait_for("s: train");
        self.send("s");
        self.wait_for("● training");
    }

    /// Waits for the first full frame and checks that the terminal is raw meanwhile.
    fn wait_ready(&self) -> String {
        // The status bar is drawn last: once it shows the files, the frame is whole.
        self.wait_for("20 img · 20 cap");
        let screen = self.wait_for("20 images");
        assert!(!self.terminal_is_cooked(), "raw mode should be on while the workbench runs");
        screen
    }
}

#[test]
fn switches_panes_opens_help_and_quits() {
    let mut session = Session::start(&[]);
    let dataset = session.wait_ready();
    assert!(dataset.contains("1 Dataset") && dataset.contains("4 Samples"), "{dataset}");
    assert!(dataset.contains("zeltmug_01.png"), "{dataset}");
    assert!(dataset.contains("20 img · 20 cap · 0 runs"), "{dataset}");

    session.send("2");
    let captions = session.wait_for("20 of 20 images captioned");
    assert!(captions.contains("trigger “zeltmug” in"), "{captions}");
    session.send("3");
    let train = session.wait_for("No runs yet in runs/.");
    assert!(train.contains("200 steps of batch 2 at 128 px on builtin:tiny"), "{train}");
    session.send("\t");
    let samples = session.wait_for("3 prompts");
    assert!(samples.contains("zeltmug on a beach at sunset"), "{samples}");
    session.send("1");
    session.wait_for("Dataset · dataset/");

    session.send("?");
    let help = session.wait_for("Everywhere");
    assert!(
        help.contains("Dataset pane (this pane)") && help.contains("quit (asks if something is unsaved)"),
        "{help}"
    );
    session.send("\x1b");
    session.wait_for("20 images");
    // Esc must close the overlay, not leave the program.
    assert!(!session.contents().contains("Everywhere"));

    session.send("q");
    let status = session.wait_exit();
    assert!(status.success(), "{status:?}");
    session.assert_restored();
}

#[test]
fn an_unsaved_theme_is_offered_for_saving_on_quit() {
    let mut session = Session::start(&[]);
    session.wait_ready();
    session.send("t");
    session.wait_for("● unsaved");
    session.send("q");
    let dialog = session.wait_for("Quit?");
    assert!(dialog.contains("the theme `light` is not saved to project.toml"), "{dialog}");
    session.send("s");
    assert!(session.wait_exit().success());
    session.assert_restored();
    let saved = std::fs::read_to_string(session.project.path().join("project.toml")).unwrap();
    assert!(saved.contains("theme = \"light\""), "{saved}");
    assert!(saved.starts_with("# The demo project"), "comments must survive");
}

#[test]
fn follows_a_live_resize() {
    let mut session = Session::start(&[]);
    session.wait_ready();
    session.master.resize(PtySize { rows: 30, cols: 100, pixel_width: 0, pixel_height: 0 }).unwrap();
    session.screen.lock().unwrap().screen_mut().set_size(size(30), size(100));
    let start = Instant::now();
    loop {
        let rows: Vec<String> = session.screen.lock().unwrap().screen().rows(0, 100).collect();
        // The help hint sits at the right end of the top row, and the status bar on the last.
        let (top, bottom) = (rows[0].trim_end(), rows[29].trim_end());
        if top.ends_with("? help") && top.chars().count() > 95 && bottom.contains("20 img") {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "no redraw at 100×30; rows: {rows:#?}");
        std::thread::sleep(Duration::from_millis(30));
    }
    session.send("\x03"); // Ctrl-C quits too.
    assert!(session.wait_exit().success());
    session.assert_restored();
}

#[test]
fn sigterm_restores_the_terminal() {
    let mut session = Session::start(&[]);
    session.wait_ready();
    let pid = session.child.process_id().unwrap() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(session.wait_exit().exit_code(), 128 + 15);
    session.assert_restored();
}

#[test]
fn sighup_from_a_dropped_connection_restores_the_terminal() {
    let mut session = Session::start(&[]);
    session.wait_ready();
    let pid = session.child.process_id().unwrap() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert_eq!(session.wait_exit().exit_code(), 128 + 1);
    session.assert_restored();
}

#[test]
fn a_panic_restores_the_terminal_before_reporting() {
    let mut session = Session::start(&[("EASEL_CRASH_DRILL", "panic")]);
    let status = session.wait_exit();
    assert!(!status.success());
    session.assert_restored();
    let output = session.output_text();
    // The first restore is the panic hook's; unwinding restores once more, harmlessly.
    let left = output.find("\x1b[?1049l").unwrap();
    let message = output.find("crash drill: panic inside the workbench").expect("panic message shown");
    assert!(message > left, "the panic message must print after the screen is restored, to be readable");
}

#[test]
fn an_error_restores_the_terminal_before_reporting() {
    let mut session = Session::start(&[("EASEL_CRASH_DRILL", "error")]);
    assert_eq!(session.wait_exit().exit_code(), 1);
    session.assert_restored();
    let output = session.output_text();
    let message = output.find("easel: error: crash drill: error inside the workbench").expect("error shown");
    assert!(message > output.find("\x1b[?1049l").unwrap());
}

/// The highest `step N/` the screen shows.
fn shown_step(screen: &str) -> Option<u64> {
    screen.split("step ").skip(1).filter_map(|rest| rest.split('/').next()?.trim().parse().ok()).max()
}

fn braille_cells(screen: &str) -> usize {
    screen.chars().filter(|c| ('\u{2801}'..='\u{28ff}').contains(c)).count()
}

/// Waits until the chart is drawn and the screen shows step `at_least` or later.
fn wait_step(session: &Session, at_least: u64) -> String {
    let start = Instant::now();
    loop {
        let screen = session.contents();
        if shown_step(&screen).is_some_and(|s| s >= at_least) && braille_cells(&screen) > 10 {
            return screen;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no step {at_least} on screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A demo copy whose project.toml trains quickly at 64 px with these `[train]` lines added.
fn quick_project(train: &str) -> (tempfile::TempDir, String) {
    let project = common::demo_copy();
    let config = format!(
        "name = \"demo\"\ndataset = \"dataset\"\n[train]\nbatch_size = 2\nlearning_rate = 1e-3\nwarmup_steps = 0\n\
         resolution = 64\nprecision = \"f32\"\nsample_every = 0\nvalidate_every = 0\n{train}"
    );
    std::fs::write(project.path().join("project.toml"), &config).unwrap();
    (project, config)
}

/// The one run folder of a project.
fn only_run(project: &std::path::Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(project.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

#[test]
fn save_then_quit_while_training_stops_with_a_checkpoint_at_that_step_which_resumes() {
    let (project, _) = quick_project("steps = 3000\nsave_every = 1000\n");
    let mut session = Session::start_in(project, &[]);
    session.start_training();
    wait_step(&session, 10);
    session.send("q");
    let dialog = session.wait_for("Before quitting");
    assert!(dialog.contains("save, then quit") && dialog.contains("quit without saving"), "{dialog}");
    session.send("s");
    assert!(session.wait_exit().success());
    session.assert_restored();

    let run = only_run(session.project.path());
    let checkpoints: Vec<u64> =
        easel::train::run_dir::RunDir { id: String::new(), dir: run.clone() }.checkpoint_steps();
    let [step] = checkpoints[..] else { panic!("one checkpoint, at the step it stopped: {checkpoints:?}") };
    assert!((10..3000).contains(&step), "{step}");
    let metrics = easel::train::read_metrics(&run);
    assert!(metrics.finished && metrics.stopped, "its log ends with the stop");
    assert_eq!(metrics.loss.last().map(|(s, _)| *s), Some(step));

    // It resumes from there (two steps more, to keep the test short).
    let path = session.project.path().to_str().unwrap().to_string();
    let more = (step + 2).to_string();
    let resumed = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["train", &path, "--resume", "--steps", &more])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(stdout.contains(&format!("resuming at step {step}")), "{stdout}");
    assert_eq!(easel::train::read_metrics(&run).loss.last().map(|(s, _)| *s), Some(step + 2));
}

#[test]
fn a_project_file_changed_elsewhere_is_re_read_and_a_broken_one_starts_no_run() {
    let (project, config) = quick_project("steps = 40\nsave_every = 0\n");
    let file = project.path().join("project.toml");
    let mut session = Session::start_in(project, &[]);
    session.wait_for("1 Dataset");
    session.send("3");
    session.wait_for("40 steps of batch");
    std::fs::write(&file, config.replace("steps = 40", "stesp = 40")).unwrap();
    session.send("r");
    let broken = session.wait_for("project.toml:11:1: key `train.stesp`");
    assert!(broken.contains("⚠ settings"), "{broken}");
    session.send("s");
    session.wait_for("Not starting: project.toml:11:1");
    assert!(!session.project.path().join("runs").exists(), "no run was made");

    std::fs::write(&file, config.replace("steps = 40", "steps = 30")).unwrap();
    session.send("r");
    session.wait_for("30 steps of batch");
    session.send("s");
    session.wait_for("Finished at step 30");
    session.send("q");
    assert!(session.wait_exit().success());
    let run = only_run(session.project.path());
    let frozen = std::fs::read_to_string(run.join("project.toml")).unwrap();
    assert_eq!(frozen, config.replace("steps = 40", "steps = 30"), "the run froze what it trained with");
    assert_eq!(easel::train::read_metrics(&run).loss.len(), 30);
}

#[test]
fn the_train_pane_starts_a_run_and_its_chart_updates_live() {
    let project = common::demo_copy();
    let config = "name = \"demo\"\ndataset = \"dataset\"\n[train]\nsteps = 60\nbatch_size = 2\nlearning_rate = 1e-3\n\
                  warmup_steps = 0\nresolution = 64\nprecision = \"f32\"\nsave_every = 0\nsample_every = 0\nvalidate_every = 10\n";
    std::fs::write(project.path().join("project.toml"), config).unwrap();
    let mut session = Session::start_in(project, &[]);
    session.start_training();
    let early = wait_step(&session, 8);
    let later = wait_step(&session, shown_step(&early).unwrap() + 8);
    assert_ne!(early, later, "the chart did not change");
    assert!(later.contains("loss") && later.contains("it/s"), "{later}");
    session.send("x");
    let stopped = session.wait_for("at step");
    assert!(stopped.contains("Stopped at step") || stopped.contains("Finished at step"), "{stopped}");
    session.send("q");
    assert!(session.wait_exit().success());
    session.assert_restored();
    let runs: Vec<_> = std::fs::read_dir(session.project.path().join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
}

#[test]
fn the_dataset_pane_rejects_and_restores_flagged_images() {
    let mut session = Session::start(&[]);
    session.wait_for("4 to review");
    let dataset = session.project.path().join("dataset");
    // n: the first image still to review is the near duplicate 03; x rejects it with its caption.
    session.send("n");
    session.wait_for("zeltmug_18.png (distance");
    session.send("x");
    session.wait_for("1 rejected");
    assert!(dataset.join("_rejected/zeltmug_03.png").is_file() && dataset.join("_rejected/zeltmug_03.txt").is_file());
    assert!(!dataset.join("zeltmug_03.png").exists());
    // Keep the blurry 07 despite its flag.
    session.send("n");
    session.wait_for("blurry: sharpness");
    session.send(" ");
    session.wait_for("Kept zeltmug_07.png");
    // Show the rejected images (f cycles to them) and restore.
    for _ in 0..8 {
        if session.contents().contains("rejected by name") {
            break;
        }
        session.send("f");
        std::thread::sleep(Duration::from_millis(100));
    }
    session.wait_for("rejected by name");
    session.send("u");
    session.wait_for("Restored zeltmug_03.png");
    session.wait_for("0 rejected");
    assert!(dataset.join("zeltmug_03.png").is_file() && dataset.join("zeltmug_03.txt").is_file());
    session.send("q");
    assert!(session.wait_exit().success());
    session.assert_restored();
    // The keep decision outlives the session.
    let kept = std::fs::read_to_string(dataset.join(".easel-kept")).unwrap();
    assert!(kept.contains("zeltmug_07.png"), "{kept}");
}

#[test]
fn a_caption_is_edited_and_saved_in_the_workbench() {
    let mut session = Session::start(&[]);
    session.wait_ready();
    session.send("2");
    session.wait_for("with findings");
    // n twice: the planted generic caption, 11; Enter edits it.
    session.send("n");
    std::thread::sleep(Duration::from_millis(100));
    session.send("n");
    session.wait_for("zeltmug_11.txt");
    session.send("\r");
    session.wait_for("Editing:");
    session.send(", a teal ceramic mu\t");
    session.wait_for("● unsaved");
    session.send("\x1b");
    session.wait_for("Saved zeltmug_11.txt");
    let caption = std::fs::read_to_string(session.project.path().join("dataset/zeltmug_11.txt")).unwrap();
    assert_eq!(caption, "a photo of an object, a teal ceramic mug");
    // u undoes it, even though it was one keystroke-free save.
    session.send("u");
    session.wait_for("Undid: edit zeltmug_11.txt");
    let caption = std::fs::read_to_string(session.project.path().join("dataset/zeltmug_11.txt")).unwrap();
    assert_eq!(caption, "a photo of an object\n");
    session.send("q");
    assert!(session.wait_exit().success());
    session.assert_restored();
}
