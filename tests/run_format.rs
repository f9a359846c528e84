//! Run folders keep their format: `tests/fixtures/run/` holds a run of the
//! demo (4 steps at 64 px, validation, samples and a checkpoint every 2
//! steps) written by the trainer before its records were typed. Its lines
//! and its checkpoint read into the typed records, write back byte for byte,
//! and the run resumes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::demo_copy;
use easel::project::Project;
use easel::train::records::{CheckpointState, MetricsRecord};
use easel::train::trainer::{self, Event, Resume, TrainOptions};
use easel::train::{list_runs, read_metrics};

mod common;

const RUN_ID: &str = "20261130-163154";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run").join(RUN_ID)
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(fixture().join("metrics.jsonl")).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn every_line_of_an_existing_log_reads_as_a_record_and_writes_back_the_same() {
    let mut kinds = Vec::new();
    for line in fixture_lines() {
        let record = MetricsRecord::parse(&line).unwrap_or_else(|| panic!("not a record: {line}"));
        assert_eq!(String::from_utf8(record.to_line().unwrap()).unwrap(), format!("{line}\n"));
        kinds.push(match record {
            MetricsRecord::Step(m) => {
                assert_eq!((m.total, m.epoch), (4, 0));
                assert!(m.loss > 0.0 && m.lr > 0.0 && m.memory_mib.is_some(), "{line}");
                format!("step {}", m.step)
            }
            MetricsRecord::Validation { step, val_loss } => {
                assert!(val_loss > 0.0);
                format!("validation {step}")
            }
            MetricsRecord::Samples { paths, step } => {
                assert_eq!(paths.len(), 3);
                assert!(paths[0].ends_with(format!("samples/step-{step:06}/00-seed1.png")), "{paths:?}");
                format!("samples {step}")
            }
            MetricsRecord::Checkpoint { path, step } => {
                assert!(path.ends_with(format!("checkpoints/step-{step:06}.safetensors")), "{path:?}");
                format!("checkpoint {step}")
            }
            MetricsRecord::Finished { lora, step, stopped } => {
                assert!(lora.ends_with("demo.safetensors") && !stopped);
                format!("finished {step}")
            }
            MetricsRecord::ResumedFrom { run, step } => format!("resumed from {run} at {step}"),
            MetricsRecord::Started { step } => format!("started at {step}"),
        });
    }
    let expected = "samples 0, step 1, step 2, validation 2, samples 2, checkpoint 2, step 3, step 4, \
                    validation 4, samples 4, checkpoint 4, finished 4";
    assert_eq!(kinds.join(", "), expected);

    let runs = list_runs(fixture().parent().unwrap());
    assert_eq!((runs[0].id.as_str(), runs[0].last_step), (RUN_ID, Some(4)));
    let metrics = read_metrics(&fixture());
    assert_eq!(metrics.loss.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(metrics.validation.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(metrics.samples.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(metrics.checkpoints, [2, 4]);
    assert_eq!((metrics.total, metrics.finished), (Some(4), true));
    assert_eq!(metrics.last.map(|m| m.step), Some(4));
}

#[test]
fn an_existing_checkpoint_reads_as_trainer_state() {
    let path = fixture().join("checkpoints/step-000002.state.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let state = CheckpointState::from_metadata(header.metadata().as_ref().unwrap(), &path).unwrap();
    let validation = fixture_lines().iter().find_map(|line| match MetricsRecord::parse(line) {
        Some(MetricsRecord::Validation { step: 2, val_loss }) => Some(val_loss),
        _ => None,
    });
    assert_eq!(
        state,
        CheckpointState {
            step: 2,
            optimizer_steps: 2,
            config_hash: "0e23896a4435e42d".into(),
            validation_losses: HashMap::from([(2, validation.unwrap())]),
        }
    );
}

#[test]
fn an_existing_run_resumes_from_its_checkpoint() {
    let dir = demo_copy();
    let run = dir.path().join("runs").join(RUN_ID);
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    let checkpoint = ["checkpoints/step-000002.safetensors", "checkpoints/step-000002.state.safetensors"];
    for file in ["project.toml", "metrics.jsonl"].iter().chain(&checkpoint) {
        std::fs::copy(fixture().join(file), run.join(file)).unwrap();
    }

    let project = Project::open(dir.path()).unwrap();
    let (_commands, command_rx) = std::sync::mpsc::channel();
    let (events, event_rx) = std::sync::mpsc::channel();
    let options = TrainOptions { resume: Some(Resume::Latest), ..TrainOptions::default() };
    trainer::run(&project, &options, &command_rx, &events).unwrap();
    drop(events);
    let events: Vec<Event> = event_rx.iter().collect();
    let started = events.iter().find(|e| matches!(e, Event::Started { .. }));
    assert!(matches!(started, Some(Event::Started { start_step: 2, total: 4, .. })), "{started:?}");
    assert!(matches!(events.last(), Some(Event::Finished { step: 4, stopped: false, .. })), "{:?}", events.last());

    // The lines up to the checkpoint stay as they were; the steps after it are trained again alike.
    let before = fixture_lines();
    let after: Vec<String> =
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(str::to_string).collect();
    let kept = before.iter().take_while(|line| MetricsRecord::parse(line).unwrap().step() <= 2).count();
    assert_eq!(after[..kept], before[..kept]);
    let losses = |lines: &[String]| -> Vec<(u64, f64)> {
        lines
            .iter()
            .filter_map(|line| match MetricsRecord::parse(line) {
                Some(MetricsRecord::Step(m)) => Some((m.step, m.loss)),
                _ => None,
            })
            .collect()
    };
    let (expected, resumed) = (losses(&before), losses(&after));
    assert_eq!(resumed.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let worst = resumed.iter().zip(&expected).map(|(a, b)| (a.1 - b.1).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4, "resumed losses differ by {worst}");
    assert_eq!(read_metrics(&run).validation.len(), 2);
}
