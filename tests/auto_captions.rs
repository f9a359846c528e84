//! Auto-captions end to end, as a person meets them: a demo copy with three
//! captions deleted and a random-weight BLIP folder; `easel captions auto
//! --only-missing` drafts exactly those three (the real binary, the real
//! model code), the Captions pane's queue shows them, accepting one writes
//! its caption and undo takes it back, and `easel train` warns about the
//! two still left.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use easel::captioner::blip::random::{tiny_config, write_random_blip};
use easel::captions::drafts::{Drafts, Review};
use easel::tui::{Action, Key, PaneId, render};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

mod common;

use common::captions_of;

const DELETED: [&str; 3] = ["zeltmug_04", "zeltmug_09", "zeltmug_14"];

fn easel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel")).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn drafts_for_the_missing_captions_are_reviewed_accepted_undone_and_counted_by_training() {
    let project = common::demo_copy();
    let dir = project.path();
    let dataset = dir.join("dataset");
    for name in DELETED {
        fs::remove_file(dataset.join(format!("{name}.txt"))).unwrap();
    }
    // Train for one step at a small size: the warning comes before training starts.
    let config = fs::read_to_string(dir.join("project.toml")).unwrap();
    let config = config
        .replace("steps = 200", "steps = 1")
        .replace("resolution = 128", "resolution = 64")
        .replace("warmup_steps = 10", "warmup_steps = 0");
    fs::write(dir.join("project.toml"), config).unwrap();
    let model = tempfile::tempdir().unwrap();
    let small_blip = tiny_config();
    write_random_blip(model.path(), &small_blip).unwrap();
    let human = captions_of(&dataset);
    let (dir_arg, model_arg) = (dir.to_str().unwrap(), model.path().to_str().unwrap());

    let run = stdout(&easel(&["captions", dir_arg, "auto", "--model", model_arg, "--only-missing", "--batch", "2"]));
    assert!(run.contains("Made 3 drafts ("), "{run}");
    let drafts = Drafts::read(&dataset).unwrap();
    let drafted: Vec<String> = drafts.iter().map(|d| d.image.to_string_lossy().into_owned()).collect();
    assert_eq!(drafted, DELETED.map(|name| format!("{name}.png")), "exactly the three without a caption");
    for draft in drafts.iter() {
        assert_eq!(draft.review, Review::Pending);
        assert!(draft.text.starts_with("zeltmug, "), "the trigger placed first: {}", draft.text);
        assert!(draft.model.contains("BLIP"), "{}", draft.model);
    }
    assert_eq!(captions_of(&dataset), human, "drafts are not captions; human captions untouched");
    let again = stdout(&easel(&["captions", dir_arg, "auto", "--model", model_arg, "--only-missing"]));
    assert_eq!(Drafts::read(&dataset).unwrap(), drafts, "a rerun drafts nothing more: {again}");

    // The Captions pane's queue shows the three, and the status bar counts them.
    let mut app = common::workbench::loaded_app(dir, "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    app.handle_key(Key::char('D'));
    let mut terminal = Terminal::new(TestBackend::new(120, 36)).unwrap();
    terminal.draw(|frame| render(&app, frame)).unwrap();
    let screen = format!("{:?}", terminal.backend());
    assert!(screen.contains("3 drafts to review"), "{screen}");
    for name in DELETED {
        assert!(screen.contains(name), "{name} in the queue: {screen}");
    }

    // Accepting one writes its caption; undo takes it back and the draft returns.
    let first = format!("{}.png", DELETED[0]);
    let accepted = stdout(&easel(&["captions", dir_arg, "drafts", "--accept", &first]));
    assert!(accepted.contains("Accepted 1 draft"), "{accepted}");
    let caption = fs::read_to_string(dataset.join(format!("{}.txt", DELETED[0]))).unwrap();
    assert_eq!(caption, drafts.get(Path::new(&first)).unwrap().text);
    assert!(stdout(&easel(&["captions", dir_arg, "undo"])).contains("Undid: accept the draft"));
    assert_eq!(captions_of(&dataset), human, "undo restores the captions byte for byte");
    assert!(stdout(&easel(&["captions", dir_arg, "drafts"])).contains("3 drafts awaiting review"));
    assert!(stdout(&easel(&["captions", dir_arg, "redo"])).contains("Redid: accept the draft"));

    // Training leaves the two unreviewed ones out, and says so first.
    let train = stdout(&easel(&["train", dir_arg]));
    let warning =
        format!("warning: 2 images are left out: their drafts await review (easel captions {dir_arg} drafts)");
    assert!(train.starts_with(&warning), "{train}");
    assert_eq!(train.matches("no caption: its draft awaits review").count(), 2, "{train}");
}
