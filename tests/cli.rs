//! The command line, run as a real process: init, and errors that must
//! leave the terminal untouched or say what to do.

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
