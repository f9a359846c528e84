//! The command line, run as a real process: init, errors that must leave
//! the terminal untouched or say what to do (a missing or empty dataset
//! folder among them), and output into a pipe whose reader has gone.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

fn easel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel")).args(args).stdin(Stdio::null()).output().expect("run easel")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An error exit that printed one clear line and no terminal control sequences.
fn assert_clean_error(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure");
    let stderr = text(&output.stderr);
    assert!(!stderr.contains('\x1b') && !text(&output.stdout).contains('\x1b'), "escape sequences printed: {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("easel: error: "), "{stderr}");
    stderr
}

#[test]
fn init_creates_a_project_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("shop");
    let output = easel(&["init", target.to_str().unwrap(), "--trigger", "zeltmug"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("Created project “shop”"));
    for sub in ["dataset", "runs", "cache"] {
        assert!(target.join(sub).is_dir(), "{sub}/ missing");
    }
    let project = easel::project::Project::open(&target).unwrap();
    assert_eq!(project.config.trigger, "zeltmug");

    // A second init must not overwrite the first.
    let again = easel(&["init", target.to_str().unwrap()]);
    let stderr = assert_clean_error(&again);
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn a_malformed_project_file_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("project.toml"), "name = \"x\"\n\n[train]\nsteps = \"lots\"\n").unwrap();
    let output = easel(&[dir.path().to_str().unwrap()]);
    let stderr = assert_clean_error(&output);
    let expected = format!("{}:4:", dir.path().join("project.toml").display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("key `train.steps`"), "{stderr}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn an_unknown_theme_in_project_toml_is_located() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("project.toml"), "# mine\ntheme = \"neon\"\n").unwrap();
    let stderr = assert_clean_error(&easel(&[dir.path().to_str().unwrap()]));
    assert!(stderr.contains("project.toml:2:1: key `theme`: unknown theme `neon`"), "{stderr}");
}

#[test]
fn a_folder_without_a_project_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = assert_clean_error(&easel(&[dir.path().to_str().unwrap()]));
    assert!(stderr.contains("holds no project.toml") && stderr.contains("easel init"), "{stderr}");
}

#[test]
fn the_workbench_refuses_to_draw_without_a_terminal() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo");
    let stderr = assert_clean_error(&easel(&[demo.to_str().unwrap()]));
    assert!(stderr.contains("interactive terminal"), "{stderr}");
    let stderr = assert_clean_error(&easel(&[demo.to_str().unwrap(), "--theme", "neon"]));
    assert!(stderr.contains("--theme: unknown theme `neon`"), "{stderr}");
}

#[test]
fn captions_auto_without_a_model_says_how_to_get_one() {
    let project = common::demo_copy();
    let output = easel(&["captions", project.path().to_str().unwrap(), "auto"]);
    let stderr = assert_clean_error(&output);
    assert!(stderr.contains("pass --model DIR or set auto_captions.model"), "{stderr}");
    assert!(stderr.contains("huggingface-cli download Salesforce/blip-image-captioning-base"), "{stderr}");
    assert_eq!(output.status.code(), Some(1));
    assert!(!project.path().join("dataset/.easel-drafts.json").exists(), "nothing drafted");
}

/// How many times `needle` appears in `haystack`.
fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_missing_dataset_folder_is_one_clear_error_for_every_command_that_reads_it() {
    let project = common::demo_copy();
    let dir = project.path().to_str().unwrap();
    let dataset = project.path().join("dataset");
    std::fs::remove_dir_all(&dataset).unwrap();
    // eval needs a run to get as far as the dataset: the fixture run folder.
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run/20261130-163154");
    let runs = project.path().join("runs/20261130-163154");
    std::fs::create_dir_all(runs.join("checkpoints")).unwrap();
    for file in ["metrics.jsonl", "project.toml"] {
        std::fs::copy(run.join(file), runs.join(file)).unwrap();
    }
    for file in ["step-000002.safetensors", "step-000002.state.safetensors"] {
        std::fs::copy(run.join("checkpoints").join(file), runs.join("checkpoints").join(file)).unwrap();
    }
    let commands: &[&[&str]] = &[
        &["scan", dir],
        &["scan", dir, "--json"],
        &["captions", dir, "lint"],
        &["captions", dir, "lint", "--json"],
        &["captions", dir, "normalize"],
        &["captions", dir, "stats"],
        &["captions", dir, "suggest"],
        &["captions", dir, "drafts"],
        &["captions", dir, "auto", "--model", dir],
        &["captions", dir, "export", "--metadata", dir],
        &["train", dir],
        &["eval", dir],
    ];
    let expected = format!("the dataset folder {} does not exist", dataset.display());
    for args in commands {
        let output = easel(args);
        assert!(!output.status.success(), "{args:?} succeeded, printing: {}", text(&output.stdout));
        let stderr = assert_clean_error(&output);
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert_eq!(
            occurrences(&stderr, &dataset.display().to_string()),
            1,
            "{args:?}: the folder named once: {stderr}"
        );
        assert_eq!(output.status.code(), Some(1), "{args:?}");
    }
    assert!(!dataset.exists(), "no command made the folder");
}

#[test]
fn an_empty_dataset_folder_is_an_error_for_scan_and_lint() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().to_str().unwrap();
    assert!(easel(&["init", dir]).status.success());
    let dataset = project.path().join("dataset");
    let expected = format!("no images in {}: put images there, each with a .txt caption", dataset.display());
    for args in
        [&["scan", dir][..], &["scan", dir, "--json"], &["captions", dir, "lint"], &["captions", dir, "lint", "--json"]]
    {
        let output = easel(args);
        assert!(!output.status.success(), "{args:?} succeeded, printing: {}", text(&output.stdout));
        let stderr = assert_clean_error(&output);
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert_eq!(occurrences(&stderr, &dataset.display().to_string()), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: printed {:?}", text(&output.stdout));
    }
}

/// Runs easel with its stdout a pipe whose read end is already closed, as
/// `easel … | head` is once head has read enough.
fn into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run easel")
}

/// Ended the way command-line tools do when their reader goes away: quietly
/// (exit 0) or killed by SIGPIPE (a shell's 141), never a panic.
fn assert_ended_quietly(args: &[&str], output: &Output) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(
        output.status.code() == Some(0) || output.status.signal() == Some(libc::SIGPIPE),
        "{args:?}: {:?}, {stderr}",
        output.status
    );
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let project = common::demo_copy();
    let dir = project.path().to_str().unwrap();
    let lora = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sd15/lora/lora_attn.kohya.safetensors");
    let lora = lora.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["scan", dir, "--json"],
        &["scan", dir],
        &["captions", dir, "lint"],
        &["captions", dir, "lint", "--json"],
        &["captions", dir, "stats"],
        &["lora", "info", lora, "--json"],
        &["lora", "info", lora],
        &["--help"],
    ];
    for args in commands {
        assert_ended_quietly(args, &into_a_closed_pipe(args));
    }
}
