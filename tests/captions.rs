//! `easel captions` as a user runs it: the demo's planted caption flaws,
//! one undoable normalization, a batch killed half-way, and the review of
//! drafts (listed, rejected, accepted clean, undone).

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use easel::captions::CaptionContext;
use easel::captions::drafts::{Draft, update};
use easel::project::Project;

mod common;

use common::captions_of;

fn easel(project: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("captions")
        .arg(project)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run easel");
    assert!(output.status.success(), "easel captions {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_demo_flaws_are_found_and_one_rule_fixes_the_term_with_one_undoable_apply() {
    let project = common::demo_copy();
    let dir = project.path();
    let lint: serde_json::Value = serde_json::from_str(&stdout(&easel(dir, &["lint", "--json"]))).unwrap();
    let found: Vec<(String, String)> = lint
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|entry| {
            let file = entry["caption"].as_str().unwrap().to_string();
            entry["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |f| (file.clone(), f["lint"].as_str().unwrap().into()))
        })
        .collect();
    let expected = [
        ("zeltmug_05.txt", "inconsistent"),
        ("zeltmug_11.txt", "generic"),
        ("zeltmug_11.txt", "no_trigger"),
        ("zeltmug_13.txt", "inconsistent"),
    ];
    assert_eq!(found, expected.map(|(f, l)| (f.to_string(), l.to_string())), "exactly the planted flaws");

    let before = captions_of(&dir.join("dataset"));
    let suggested = stdout(&easel(dir, &["suggest"]));
    assert!(suggested.contains("1. mug = [\"cup\"]"), "{suggested}");
    easel(dir, &["suggest", "--accept", "1"]);
    let preview = stdout(&easel(dir, &["normalize"]));
    assert!(preview.contains("[-cup-] {+mug+}") && preview.contains("3 of 20 captions would change"), "{preview}");
    assert_eq!(captions_of(&dir.join("dataset")), before, "a preview writes nothing");
    easel(dir, &["normalize", "--apply"]);
    let after = captions_of(&dir.join("dataset"));
    assert!(after.iter().all(|(_, text)| !text.contains(" cup ")));
    assert_eq!(after.iter().zip(&before).filter(|(a, b)| a != b).count(), 3);
    let relinted = stdout(&easel(dir, &["lint"]));
    assert!(relinted.contains("1 with findings") && relinted.contains("generic 1"), "{relinted}");
    assert!(stdout(&easel(dir, &["normalize"])).contains("normalized already"), "normalizing twice changes nothing");
    // One apply, one undo: every caption as it was.
    assert!(stdout(&easel(dir, &["undo"])).contains("Undid: normalize 3 captions"));
    assert_eq!(captions_of(&dir.join("dataset")), before);
    easel(dir, &["redo"]);
    assert_eq!(captions_of(&dir.join("dataset")), after);
}

#[test]
fn a_batch_killed_half_way_leaves_each_caption_old_or_new_and_undo_restores_all() {
    let project = common::demo_copy();
    let dir = project.path();
    let dataset = dir.join("dataset");
    fs::write(dir.join("vocabulary.toml"), "[terms]\nmug = [\"cup\"]\n").unwrap();
    for i in 0..120 {
        // Captions belong to images: each gets a (small) picture.
        fs::copy(dataset.join("zeltmug_19.png"), dataset.join(format!("extra_{i:03}.png"))).unwrap();
        fs::write(dataset.join(format!("extra_{i:03}.txt")), format!("zeltmug, a teal cup number {i}")).unwrap();
    }
    let before = captions_of(&dataset);
    let mut child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["captions", dir.to_str().unwrap(), "normalize", "--apply"])
        .env("EASEL_FAULT_PAUSE_WRITES_MS", "10")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some captions are written and others are not.
    let started = Instant::now();
    loop {
        let changed = captions_of(&dataset).iter().zip(&before).filter(|(a, b)| a != b).count();
        if changed >= 10 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the batch never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let middle = captions_of(&dataset);
    // What the batch meant to write is in the journal, flushed before the first file.
    let journal = fs::read_to_string(dataset.join(".easel-captions.jsonl")).unwrap();
    let edit = journal
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .rfind(|line| line["op"] == "edit")
        .expect("the batch is journaled");
    let planned: std::collections::HashMap<&str, (&str, &str)> = edit["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), (c["before"].as_str().unwrap(), c["after"].as_str().unwrap())))
        .collect();
    assert_eq!(planned.len(), 123, "the 120 extra captions and the demo's 3 flaws");
    let changed = middle.iter().zip(&before).filter(|(a, b)| a != b).count();
    assert!(changed > 0 && changed < planned.len(), "killed mid-way: {changed} of {} changed", planned.len());
    for ((name, text), (_, old)) in middle.iter().zip(&before) {
        match planned.get(name.as_str()) {
            Some(&(planned_before, after)) => {
                assert_eq!(planned_before, old, "{name}: the journal's before is what was on disk");
                assert!(text == old || text == after, "{name} is torn: {text:?}");
            }
            None => assert_eq!(text, old, "{name} was not in the batch"),
        }
    }
    assert!(stdout(&easel(dir, &["undo"])).contains("Undid"));
    assert_eq!(captions_of(&dataset), before, "undo restores the half-applied batch");
}

#[test]
fn a_phrase_trigger_is_found_linted_and_moved_first_as_one_unit() {
    let project = common::demo_copy();
    let dir = project.path();
    let config = fs::read_to_string(dir.join("project.toml")).unwrap();
    let config: String = config
        .lines()
        .map(|line| if line.starts_with("trigger =") { "trigger = \"ohwx man\"" } else { line })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(dir.join("project.toml"), config).unwrap();
    fs::write(dir.join("vocabulary.toml"), "trigger_position = \"first\"\n").unwrap();
    let dataset = dir.join("dataset");
    let write = |name: &str, text: &str| fs::write(dataset.join(name), text).unwrap();
    for (i, (name, _)) in captions_of(&dataset).iter().enumerate() {
        write(name, &format!("ohwx man, smiling, green jacket, city street number {i}"));
    }
    write("zeltmug_01.txt", "Ohwx Man, standing by a red door, morning light");
    write("zeltmug_02.txt", "a man in a park, green trees, wooden bench");
    write("zeltmug_03.txt", "a red scarf, ohwx man, snowy street, winter coat");

    let lint = stdout(&easel(dir, &["lint", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&lint).unwrap();
    let flagged: Vec<(&str, &str)> = report
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let file = c["caption"].as_str().unwrap();
            c["findings"].as_array().unwrap().iter().map(move |f| (file, f["lint"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(flagged, [("zeltmug_02.txt", "no_trigger")], "{lint}");

    easel(dir, &["normalize", "--apply"]);
    let read = |name: &str| fs::read_to_string(dataset.join(name)).unwrap();
    assert_eq!(read("zeltmug_02.txt"), "ohwx man, a man in a park, green trees, wooden bench");
    assert_eq!(read("zeltmug_03.txt"), "ohwx man, a red scarf, snowy street, winter coat");
    assert!(stdout(&easel(dir, &["lint"])).contains("0 with findings"));
}

/// Writes drafts as `captions auto` would, without a model.
fn write_drafts(dir: &Path, drafts: &[(&str, &str)]) {
    let context = CaptionContext::open(&Project::open(dir).unwrap()).unwrap();
    update(&context.dataset, |store| {
        for (image, raw) in drafts {
            store.insert(Draft::new(image.into(), raw, "test captioner", &context.rules));
        }
        Ok(())
    })
    .unwrap();
}

fn lint_kinds(dir: &Path, kind: &str) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(&stdout(&easel(dir, &["lint", "--json"]))).unwrap();
    let flagged = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["findings"].as_array().unwrap().iter().any(|f| f["lint"] == kind));
    flagged.map(|c| c["caption"].as_str().unwrap().to_string()).collect()
}

#[test]
fn drafts_are_reviewed_from_the_command_line_and_an_accept_is_undone_whole() {
    let project = common::demo_copy();
    let dir = project.path();
    let dataset = dir.join("dataset");
    fs::remove_file(dataset.join("zeltmug_01.txt")).unwrap();
    fs::write(dataset.join("zeltmug_02.txt"), "").unwrap();
    let before = captions_of(&dataset);
    write_drafts(
        dir,
        &[
            ("zeltmug_01.png", "a squat teal mug with an orange star on a wooden table"),
            ("zeltmug_02.png", "a photo"),
            ("zeltmug_03.png", "a teal mug with an orange star on a shelf"),
        ],
    );
    assert_eq!(lint_kinds(dir, "draft_unreviewed"), ["zeltmug_01.txt", "zeltmug_02.txt"], "a draft is not a caption");

    let listed = stdout(&easel(dir, &["drafts"]));
    assert!(listed.contains("zeltmug, a squat teal mug with an orange star on a wooden table"), "{listed}");
    assert!(listed.contains("generic: 0 content words"), "{listed}");
    assert!(listed.contains("[-") && listed.contains("{+shelf+}"), "the captioned image's draft as a diff: {listed}");
    assert!(
        listed.contains(
            "3 drafts awaiting review: 1 clean (no findings, no caption to replace), 1 would replace a caption"
        ),
        "{listed}"
    );
    let queue: serde_json::Value = serde_json::from_str(&stdout(&easel(dir, &["drafts", "--json"]))).unwrap();
    let images: Vec<&str> = queue.as_array().unwrap().iter().map(|d| d["image"].as_str().unwrap()).collect();
    assert_eq!(images, ["zeltmug_01.png", "zeltmug_02.png", "zeltmug_03.png"]);
    assert_eq!(captions_of(&dataset), before, "listing writes nothing");

    assert!(stdout(&easel(dir, &["drafts", "--reject", "zeltmug_03.png"])).contains("Rejected 1 draft;"));
    assert!(stdout(&easel(dir, &["drafts", "--accept-clean"])).contains("Accepted 1 draft, written as captions"));
    let accepted = fs::read_to_string(dataset.join("zeltmug_01.txt")).unwrap();
    assert_eq!(accepted, "zeltmug, a squat teal mug with an orange star on a wooden table");
    let mut expected = before.clone();
    expected.insert(0, ("zeltmug_01.txt".into(), accepted));
    assert_eq!(captions_of(&dataset), expected, "only the clean draft became a caption; human captions untouched");
    assert_eq!(lint_kinds(dir, "draft_unreviewed"), ["zeltmug_02.txt"]);

    assert!(stdout(&easel(dir, &["undo"])).contains("Undid: accept the draft for zeltmug_01.png"));
    assert_eq!(captions_of(&dataset), before, "byte for byte as before the review");
    assert!(stdout(&easel(dir, &["drafts"])).contains("2 drafts awaiting review"), "the undone draft is back");

    let refused = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["captions", dir.to_str().unwrap(), "drafts", "--accept", "zeltmug_20.png"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("zeltmug_20.png: no draft awaits review"));
    assert_eq!(captions_of(&dataset), before);
}
