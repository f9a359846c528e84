//! project.toml: defaults, a full valid file, and every kind of error, each
//! naming the file, the line and the key.

use std::path::Path;

use easel::project::{self, BaseModel, LoraTargets, LrSchedule, ModelFamily, Precision, ProjectConfig};

fn parse(text: &str) -> Result<ProjectConfig, project::ConfigError> {
    project::parse(Path::new("p/project.toml"), text)
}

fn error(text: &str) -> project::ConfigError {
    parse(text).expect_err("this text must be refused")
}

#[test]
fn an_empty_file_gets_every_default() {
    let config = parse("").unwrap();
    assert_eq!(config, ProjectConfig::default());
    assert_eq!(config.model.base, BaseModel::BuiltinTiny);
    assert_eq!(config.model.family, ModelFamily::Auto);
    assert_eq!((config.lora.rank, config.lora.alpha, config.lora.targets), (16, 16.0, LoraTargets::Attention));
    assert_eq!(config.train.schedule, LrSchedule::Cosine);
    assert_eq!(config.train.precision, Precision::Auto);
    assert!(config.samples.is_empty());
}

#[test]
fn the_init_template_says_exactly_the_defaults() {
    let config = parse(&project::template("shop", "zeltmug")).unwrap();
    let expected = ProjectConfig { name: Some("shop".into()), trigger: "zeltmug".into(), ..ProjectConfig::default() };
    assert_eq!(config, expected);
}

#[test]
fn template_quotes_odd_names() {
    let config = parse(&project::template("my \"best\" \\ project", "")).unwrap();
    assert_eq!(config.name.as_deref(), Some("my \"best\" \\ project"));
}

#[test]
fn a_full_file_parses_every_field() {
    let config = parse(
        r#"
name = "mugs"
dataset = "images"
trigger = "zeltmug"
theme = "light"

[model]
base = "models/sd15"
family = "sd15"

[lora]
rank = 8
alpha = 4
targets = "transformer"
text_encoder = true

[train]
steps = 10
batch_size = 4
learning_rate = 5e-5
schedule = "linear"
warmup_steps = 2
seed = 7
resolution = 768
bucketing = false
precision = "bf16"
save_every = 5
sample_every = 0
validate_every = 3
validation_fraction = 0.2

[[samples]]
prompt = "zeltmug on a beach"

[[samples]]
prompt = "a mug"
negative = "blurry"
seed = 9
steps = 12
guidance = 4.0
"#,
    )
    .unwrap();
    assert_eq!(config.model.base, BaseModel::Path("models/sd15".into()));
    assert_eq!(config.lora.alpha, 4.0);
    assert_eq!(config.lora.targets, LoraTargets::Transformer);
    assert_eq!(config.train.precision, Precision::Bf16);
    assert_eq!(config.train.resolution, 768);
    assert_eq!(config.samples.len(), 2);
    assert_eq!((config.samples[0].steps, config.samples[0].guidance, config.samples[0].seed), (30, 7.5, 0));
    assert_eq!(config.samples[1].negative, "blurry");
}

#[test]
fn unknown_keys_name_their_table_and_line() {
    let e = error("name = \"x\"\n\n[train]\nsteps = 10\nstepz = 20\n");
    assert_eq!((e.line, e.key.as_deref()), (5, Some("train.stepz")));
    assert!(e.message.contains("unknown field `stepz`"), "{}", e.message);
    let shown = e.to_string();
    assert!(shown.starts_with("p/project.toml:5:1: key `train.stepz`: unknown field"), "{shown}");
}

#[test]
fn wrong_types_name_the_key() {
    let e = error("[train]\nseed = 1\nsteps = \"many\"\n");
    assert_eq!((e.line, e.key.as_deref()), (3, Some("train.steps")));
    assert!(e.message.contains("invalid type: string \"many\""), "{}", e.message);

    let e = error("[lora]\ntargets = \"everything\"\n");
    assert_eq!((e.line, e.key.as_deref()), (2, Some("lora.targets")));
    assert!(e.message.contains("attention") && e.message.contains("transformer"), "{}", e.message);

    let e = error("[[samples]]\nprompt = \"a\"\n\n[[samples]]\nprompt = \"b\"\nseed = -1\n");
    assert_eq!((e.line, e.key.as_deref()), (6, Some("samples[1].seed")));
}

#[test]
fn syntax_errors_give_the_line() {
    let e = error("name = \"x\"\n[train]\nsteps = = 3\n");
    assert_eq!(e.line, 3);
    assert!(!e.message.is_empty());
}

#[test]
fn a_missing_required_field_points_at_its_table() {
    let e = error("[[samples]]\nseed = 3\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("missing field `prompt`"), "{}", e.message);
}

#[test]
fn bad_values_are_located_after_parsing() {
    let e = error("[lora]\nalpha = 8\nrank = 0\n");
    assert_eq!((e.line, e.key.as_deref()), (3, Some("lora.rank")));
    let e = error("[train]\nresolution = 500\n");
    assert_eq!((e.line, e.key.as_deref()), (2, Some("train.resolution")));
    assert!(e.message.contains("multiple of 64"));
    let e = error("[train]\nsteps = 10\nwarmup_steps = 11\n");
    assert_eq!(e.key.as_deref(), Some("train.warmup_steps"));
    let e = error("[[samples]]\nprompt = \"  \"\n");
    assert_eq!((e.line, e.key.as_deref()), (2, Some("samples[0].prompt")));
    let e = error("[train]\nvalidation_fraction = 0.9\n");
    assert_eq!(e.key.as_deref(), Some("train.validation_fraction"));
}

#[test]
fn pickle_and_unknown_builtin_models_are_refused_with_a_hint() {
    let e = error("[model]\nbase = \"models/sd15.ckpt\"\n");
    assert_eq!((e.line, e.key.as_deref()), (2, Some("model.base")));
    assert!(e.message.contains("pickle") && e.message.contains(".safetensors"), "{}", e.message);
    let e = error("[model]\nbase = \"builtin:huge\"\n");
    assert!(e.message.contains("builtin:tiny"), "{}", e.message);
}

#[test]
fn the_demo_project_is_valid() {
    let demo = project::Project::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo").as_path()).unwrap();
    assert_eq!(demo.name(), "demo");
    assert_eq!(demo.config.trigger, "zeltmug");
    assert_eq!(demo.config.model.base, BaseModel::BuiltinTiny);
    assert!(demo.config.samples.len() >= 2);
}

#[test]
fn saving_the_theme_keeps_comments_and_hand_edits() {
    let dir = tempfile::tempdir().unwrap();
    let mut project = project::init(dir.path(), Some("t"), "").unwrap();
    // Edited by hand after opening: the save must not undo this.
    let file = project.config_path();
    let edited = std::fs::read_to_string(&file).unwrap().replace("steps = 1500", "steps = 900");
    std::fs::write(&file, &edited).unwrap();

    project.save_theme("light").unwrap();
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("theme = \"light\"\n"));
    assert!(saved.contains("# Easel project file."));
    assert_eq!(saved.lines().count(), edited.lines().count() + 2);
    assert_eq!(project.config.train.steps, 900);
    assert_eq!(project.config.theme.as_deref(), Some("light"));

    project.save_theme("ansi16").unwrap();
    let again = std::fs::read_to_string(&file).unwrap();
    assert_eq!(again, saved.replace("theme = \"light\"", "theme = \"ansi16\""));
}

#[test]
fn saving_refuses_a_file_broken_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut project = project::init(dir.path(), None, "").unwrap();
    std::fs::write(project.config_path(), "[train\n").unwrap();
    let error = project.save_theme("light").unwrap_err().to_string();
    assert!(error.contains("project.toml:1:"), "{error}");
    assert_eq!(std::fs::read_to_string(project.config_path()).unwrap(), "[train\n");
}
