//! `easel eval` on the built-in tiny model and the demo dataset: a run with
//! two checkpoints gives a 2 prompts × 2 seeds × scales {0, 1} × 2
//! checkpoints grid (the base model's cells once), its sheets and eval.json;
//! a rerun renders nothing; scale 0 is the base model's image exactly; an
//! evaluation stopped half-way (or killed) continues where it stopped; seeds
//! sampled together are the images each draws alone.

use std::path::Path;

use candle_core::Device;
use easel::evaluate::plan::{Overrides, Plan};
use easel::evaluate::render::{Progress, evaluate};
use easel::evaluate::scoring::Scorers;
use easel::model::pipeline::{LoadOptions, StableDiffusion};
use easel::model::sampling::{self, SampleRequest, SeededNoise};
use easel::project::Project;
use easel::train::trainer::{self, TrainOptions};

mod common;

/// A demo copy trained 4 steps at 64 px with a checkpoint every 2, and a
/// small evaluation plan (`evaluate`: more of its keys).
fn trained_project(evaluate: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = common::demo_copy();
    let config = "name = \"demo\"\ndataset = \"dataset\"\ntrigger = \"zeltmug\"\n\n[model]\nbase = \"builtin:tiny\"\n\n\
         [lora]\nrank = 4\nalpha = 4.0\n\n[train]\nsteps = 4\nbatch_size = 2\nlearning_rate = 1e-2\n\
         schedule = \"constant\"\nwarmup_steps = 0\nseed = 42\nresolution = 64\nprecision = \"f32\"\n\
         save_every = 2\nsample_every = 0\nvalidate_every = 0\nvalidation_fraction = 0.1\n\n\
         [evaluate]\nclass = \"mug\"\nseeds = [1, 2]\nscales = [0.0, 1.0]\nsteps = 3\nguidance = 5.0\n@EVALUATE@\n\
         [[evaluate.prompts]]\nprompt = \"a photo of {trigger}\"\n\n\
         [[evaluate.prompts]]\nprompt = \"{trigger} on a beach\"\nkind = \"out\"\n\n\
         [[evaluate.prompts]]\nprompt = \"a photo of a {class}\"\nkind = \"prior\"\n";
    std::fs::write(dir.path().join("project.toml"), config.replace("@EVALUATE@", evaluate)).unwrap();
    let project = Project::open(dir.path()).unwrap();
    let (_commands, command_rx) = std::sync::mpsc::channel();
    let (events, _event_rx) = std::sync::mpsc::channel();
    let run = trainer::run(&project, &TrainOptions::default(), &command_rx, &events).unwrap();
    let run_dir = run.parent().unwrap().to_path_buf();
    (dir, run_dir)
}

/// Evaluates, stopping after `stop_after` newly rendered cells; returns how many were rendered.
fn run_eval(project: &Project, plan: &Plan, stop_after: Option<usize>) -> usize {
    let mut rendered = 0;
    let mut progress = |p: Progress| {
        rendered = p.rendered;
        stop_after.is_none_or(|n| p.rendered < n)
    };
    evaluate(project, plan, &Device::Cpu, &mut progress).unwrap();
    rendered
}

#[test]
fn a_grid_renders_once_continues_after_a_stop_and_scale_zero_is_the_base_model() {
    let (dir, run_dir) = trained_project("");
    let project = Project::open(dir.path()).unwrap();
    let plan = Plan::new(&project, &run_dir, &Overrides::default()).unwrap();
    assert_eq!(plan.checkpoints.iter().map(|c| c.step).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(plan.prompts[2].prompt, "a photo of a mug");
    // 3 prompts × 2 seeds: 6 base-model cells, shared by both checkpoints, and 6 per checkpoint at scale 1.
    assert_eq!(plan.cells().len(), 6 + 2 * 6);

    // Stopped after 5 cells (a kill between cells leaves the same state: each
    // image and eval.json are written atomically), then continued.
    assert_eq!(run_eval(&project, &plan, Some(5)), 5);
    assert_eq!(run_eval(&project, &plan, None), 13, "the rest, and only the rest");
    assert_eq!(run_eval(&project, &plan, None), 0, "nothing changed: nothing rendered");

    let report = easel::evaluate::report::EvalReport::read(&plan.out_dir).unwrap();
    assert_eq!(report.cells.len(), 18);
    assert_eq!(report.sheets.len(), 3, "the base model, then each checkpoint at scale 1: {:?}", report.sheets);
    for sheet in &report.sheets {
        let image = image::open(plan.out_dir.join(sheet)).unwrap();
        assert!(image.width() > 2 * 64 && image.height() > 2 * 64, "{sheet:?}");
    }

    // Scale 0 is the base model: exactly the pixels a freshly loaded base
    // model draws for these seeds (sampled together, as the evaluation does).
    let options = LoadOptions { device: Device::Cpu, ..LoadOptions::default() };
    let base = StableDiffusion::load(&project.base_model_path(&project.config.model.base).unwrap(), &options).unwrap();
    let request = SampleRequest {
        prompt: "a photo of zeltmug".into(),
        negative: String::new(),
        width: 64,
        height: 64,
        steps: 3,
        guidance: 5.0,
        sampler: plan.sampler,
        seed: 0,
        initial_latents: None,
    };
    let latents = sampling::sample_seeds(&base, &request, &[1, 2]).unwrap();
    let expected = sampling::decode_image(&base, &latents[1]).unwrap();
    let cell = plan.out_dir.join("cells/base/p00-seed2.png");
    assert_eq!(image::open(&cell).unwrap().to_rgb8(), expected, "{}", cell.display());
    // The trained LoRA at scale 1 changes the image.
    let trained = plan.out_dir.join("cells/step-000004-scale-1/p00-seed2.png");
    assert_ne!(image::open(trained).unwrap().to_rgb8(), expected);
}

#[test]
fn a_changed_setting_renders_only_the_cells_it_touches() {
    let (dir, run_dir) = trained_project("");
    let project = Project::open(dir.path()).unwrap();
    let plan = Plan::new(&project, &run_dir, &Overrides { seeds: Some(vec![1]), ..Overrides::default() }).unwrap();
    assert_eq!(run_eval(&project, &plan, None), 3 + 2 * 3);
    // A second seed adds its cells; the first seed's are kept.
    let plan = Plan::new(&project, &run_dir, &Overrides { seeds: Some(vec![1, 2]), ..Overrides::default() }).unwrap();
    assert_eq!(run_eval(&project, &plan, None), 9);
    assert!(Path::new(&plan.out_dir.join("sheet-base.png")).is_file());
}

#[test]
fn scores_come_from_the_configured_models_and_a_missing_one_is_named() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval");
    let models = format!(
        "checkpoints = \"last\"\nclip_model = \"{}\"\ndino_model = \"{}\"\n",
        fixtures.join("clip-tiny").display(),
        fixtures.join("dinov2-tiny").display()
    );
    let (dir, run_dir) = trained_project(&models);
    let project = Project::open(dir.path()).unwrap();
    let plan = Plan::new(&project, &run_dir, &Overrides { seeds: Some(vec![1]), ..Overrides::default() }).unwrap();
    run_eval(&project, &plan, None);
    let (scorers, notes) = Scorers::load(&project, &Device::Cpu);
    assert!(notes.is_empty(), "{notes:?}");
    let mut report = easel::evaluate::report::EvalReport::read(&plan.out_dir).unwrap();
    easel::evaluate::scoring::score(&project, &plan, &scorers, &mut report).unwrap();
    assert_eq!(report.summaries.len(), 2, "the base model, and step 4 at scale 1");
    for summary in &report.summaries {
        for score in ["dino_fidelity", "clip_i", "clip_t", "memorisation"] {
            let value = summary.scores.get(score).unwrap_or_else(|| panic!("no {score}: {summary:?}"));
            assert!(value.is_finite() && (-1.0..=1.0).contains(value), "{score} {value}");
        }
    }
    assert!(report.summaries[1].scores.contains_key("prior_drift"), "the class prompt against the base model");
    let verdict = report.verdict.expect("scores give a verdict");
    assert_eq!((verdict.recommended_step, verdict.recommended_scale), (Some(4), Some(1.0)));
    assert!(report.cells.iter().all(|cell| cell.scores.contains_key("dino_fidelity")));

    // A scoring model that is not there: named by its setting; the grid stays.
    let broken = project.config_path();
    let text = std::fs::read_to_string(&broken).unwrap().replace("dinov2-tiny", "no-such-model");
    std::fs::write(&broken, text).unwrap();
    let project = Project::open(dir.path()).unwrap();
    let (scorers, notes) = Scorers::load(&project, &Device::Cpu);
    assert!(scorers.clip.is_some() && scorers.dino.is_none());
    assert!(
        notes.len() == 1 && notes[0].starts_with("evaluate.dino_model") && notes[0].contains("no-such-model"),
        "{notes:?}"
    );
    assert!(plan.out_dir.join("sheet-base.png").is_file());
}

#[test]
fn an_evaluation_killed_with_sigkill_continues_where_it_stopped() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let (dir, run_dir) = trained_project("");
    let project = Project::open(dir.path()).unwrap();
    let plan = Plan::new(&project, &run_dir, &Overrides::default()).unwrap();
    let total = plan.cells().len();
    let recorded = || easel::evaluate::report::EvalReport::read(&plan.out_dir).map_or(0, |r| r.cells.len());
    let mut child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("eval")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while recorded() < 3 {
        assert!(child.try_wait().unwrap().is_none(), "the evaluation ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(300), "no cells rendered");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = recorded();
    assert!((3..total).contains(&done), "{done} of {total}");
    assert_eq!(run_eval(&project, &plan, None), total - done, "only the cells not recorded");
}

#[test]
fn seeds_sampled_together_are_the_images_each_seed_draws_alone() {
    let cache = tempfile::tempdir().unwrap();
    let folder = easel::model::builtin::ensure_tiny(cache.path()).unwrap();
    let model = StableDiffusion::load(&folder, &LoadOptions { device: Device::Cpu, ..LoadOptions::default() }).unwrap();
    for sampler in ["ddim", "euler-a"] {
        let request = SampleRequest {
            prompt: "a photo of zeltmug".into(),
            negative: "blurry".into(),
            width: 64,
            height: 64,
            steps: 3,
            guidance: 5.0,
            sampler: sampler.parse().unwrap(),
            seed: 0,
            initial_latents: None,
        };
        let together = sampling::sample_seeds(&model, &request, &[3, 4]).unwrap();
        for (seed, batched) in [3u64, 4].into_iter().zip(&together) {
            let alone = sampling::sample(&model, &request, &mut SeededNoise::new(seed), &mut |_, _, _| {}).unwrap();
            // Batched products may sum in another order: equal to float rounding
            // (measured 1.4e-5 on latents of about unit size; under one 8-bit level).
            let difference = common::max_abs_diff(batched, &alone);
            assert!(difference < 1e-4, "{sampler}, seed {seed}: {difference}");
        }
    }
}
