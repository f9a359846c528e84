//! What a run starts from, worked out before its first step: the options,
//! the configuration and the run folder (new, continued, or a new one branched
//! from another run's checkpoint), the model with its LoRA attached, the
//! cached latents, and the names its files carry.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Sender;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor, Var};

use super::data::{Example, TrainingSet};
use super::faults::Faults;
use super::latents;
use super::run_dir::{FROZEN_CONFIG, RunDir};
use super::trainer::Event;
use crate::model::lora::{LoraNetwork, fnv1a, is_unet_target};
use crate::model::pipeline::{LoadOptions, StableDiffusion};
use crate::project::{Precision, Project, ProjectConfig};

/// Where to pick a run up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The newest run of the project.
    Latest,
    Run(String),
    /// A new run that starts from `run`'s checkpoint at `step`, leaving
    /// `run` as it is (its later checkpoints included): a roll-back.
    Checkpoint {
        run: String,
        step: u64,
    },
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Overrides `train.steps` (for a resumed run too: it can be extended).
    pub steps: Option<u32>,
    pub resume: Option<Resume>,
    pub device: Device,
    /// Drills for the tests (a NaN loss, a held run); none by default.
    pub faults: Faults,
    /// Overrides `train.learning_rate` (tests use 0 for a baseline).
    pub learning_rate: Option<f64>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { steps: None, resume: None, device: Device::Cpu, faults: Faults::default(), learning_rate: None }
    }
}

/// The dtype for frozen weights: bf16 on CUDA under `auto`, f32 on a CPU.
fn weight_dtype(precision: Precision, device: &Device) -> DType {
    match (precision, device.is_cpu()) {
        (Precision::F32, _) | (Precision::Auto, true) => DType::F32,
        (Precision::Auto, false) | (Precision::Bf16, false) => DType::BF16,
        (Precision::Bf16, true) => DType::F32,
        (Precision::F16, _) => DType::F16,
    }
}

/// How a checkpoint's trainer state is tied to the run that wrote it.
pub(super) fn config_hash(config: &ProjectConfig) -> String {
    let mut training = config.clone();
    training.train.steps = 0; // extending a run keeps its checkpoints valid
    format!("{:016x}", fnv1a(format!("{:?}|{:?}|{:?}", training.model, training.lora, training.train).as_bytes()))
}

/// One example's inputs, ready for the UNet.
pub(super) struct Prepared {
    pub latent: Tensor,
    pub caption: String,
}

/// Where a run's folder comes from.
pub(super) enum RunStart {
    /// A new run; its folder is made once the dataset has been read.
    New,
    /// An existing run, continued in its own folder.
    Continue(RunDir),
    /// A new run seeded from this run's checkpoint at the step (`RunDir::branch`).
    Branch(RunDir, u64),
}

impl RunStart {
    /// The run folder to train in (created here for a new or branched run),
    /// its frozen project.toml being `config_text`: a continued or branched
    /// run told to train longer records it.
    pub(super) fn folder(self, runs_dir: &Path, config_text: &str) -> Result<RunDir> {
        let run = match self {
            Self::New => return RunDir::create(runs_dir, config_text),
            Self::Continue(run) => run,
            Self::Branch(source, step) => source.branch(runs_dir, step)?,
        };
        if run.frozen_config()? != config_text {
            run.freeze_config(config_text)?;
        }
        Ok(run)
    }
}

/// Where the run starts and the configuration to train with: a resumed or
/// branched run's own frozen project.toml, else the project's as it was
/// read (the workbench shows those settings); `options` override the steps
/// and the learning rate. Also the configuration's text, to freeze into the
/// run: exactly what the configuration was parsed from, the overrides written
/// in. A checkpoint to branch from is checked here, before the model loads.
pub(super) fn run_config(project: &Project, options: &TrainOptions) -> Result<(RunStart, ProjectConfig, String)> {
    let (start, config, text) = match &options.resume {
        Some(resume) => {
            let (id, branch) = match resume {
                Resume::Latest => (None, None),
                Resume::Run(id) => (Some(id.as_str()), None),
                Resume::Checkpoint { run, step } => (Some(run.as_str()), Some(*step)),
            };
            let run = RunDir::open(&project.runs_dir(), id)?;
            if branch.is_none() && super::run_dir::is_training(&run.dir) {
                bail!("run {} is training now (in another window?): stop it there before continuing it here", run.id);
            }
            let text = run.frozen_config()?;
            let config = crate::project::parse(&run.dir.join(FROZEN_CONFIG), &text)?;
            let start = match branch {
                Some(step) => {
                    run.resumable_checkpoint(step)?;
                    RunStart::Branch(run, step)
                }
                None => RunStart::Continue(run),
            };
            (start, config, text)
        }
        None => (RunStart::New, project.config.clone(), project.source.clone()),
    };
    let mut text = text;
    if let Some(steps) = options.steps.filter(|&steps| steps != config.train.steps) {
        text = crate::project::set_value(&text, Some("train"), "steps", &toml::Value::Integer(steps.into()));
    }
    if let Some(lr) = options.learning_rate.filter(|&lr| lr != config.train.learning_rate) {
        text = crate::project::set_value(&text, Some("train"), "learning_rate", &toml::Value::Float(lr));
    }
    let file = match &start {
        RunStart::New => project.config_path(),
        RunStart::Continue(run) | RunStart::Branch(run, _) => run.dir.join(FROZEN_CONFIG),
    };
    let frozen = crate::project::parse(&file, &text)?;
    let wanted =
        (options.steps.unwrap_or(config.train.steps), options.learning_rate.unwrap_or(config.train.learning_rate));
    if (frozen.train.steps, frozen.train.learning_rate) != wanted {
        bail!(
            "{}: cannot write the overridden steps or learning rate into the run's copy (is [train] written as a table?)",
            file.display()
        );
    }
    Ok((start, frozen, text))
}

/// The base model, its frozen weights in the dtype the precision asks for.
pub(super) fn load_model(project: &Project, config: &ProjectConfig, device: &Device) -> Result<StableDiffusion> {
    let dtype = weight_dtype(config.train.precision, device);
    let load = LoadOptions { dtype, device: device.clone(), ..LoadOptions::default() };
    let mut model = StableDiffusion::load(&project.base_model_path(&config.model.base)?, &load)?;
    model.unet.gradient_checkpointing = config.train.gradient_checkpointing;
    Ok(model)
}

/// New LoRA adapters on the layers `[lora]` targets, attached to the model;
/// their variables are what the optimizer trains.
pub(super) fn attach_lora(
    model: &mut StableDiffusion,
    config: &ProjectConfig,
    device: &Device,
) -> Result<(LoraNetwork, Vec<Var>)> {
    let lora = &config.lora;
    let mut layers: Vec<_> = model
        .lora_layers()
        .into_iter()
        .filter(
            |(path, _)| if path.starts_with("unet.") { is_unet_target(path, lora.targets) } else { lora.text_encoder },
        )
        .collect();
    let network = LoraNetwork::create(&layers, lora.rank as usize, lora.alpha, config.train.seed, device)?;
    network.attach(&mut layers, "training");
    let vars = network.vars();
    Ok((network, vars))
}

/// Every example's VAE latent (from the cache when there), split into the
/// training and the validation examples.
pub(super) fn cache_latents(
    model: &StableDiffusion,
    set: &TrainingSet,
    cache: &Path,
    events: &Sender<Event>,
) -> Result<(Vec<Prepared>, Vec<Prepared>)> {
    let all: Vec<&Example> = set.train.iter().chain(&set.validation).collect();
    let latents = latents::latents_for(model, &all, cache, &mut |done, total| {
        let _ = events.send(Event::Preparing { what: "caching latents".into(), done, total });
    })?;
    let mut prepared =
        all.iter().zip(latents).map(|(example, latent)| Prepared { latent, caption: example.caption.clone() });
    let train = prepared.by_ref().take(set.train.len()).collect();
    Ok((train, prepared.collect()))
}

/// A project name as a file name: letters, digits, `-` and `_` kept.
pub fn file_stem(name: &str) -> String {
    let stem: String =
        name.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if stem.is_empty() { "lora".into() } else { stem }
}

/// kohya's `ss_tag_frequency`: folder → tag → count over the captions.
pub(super) fn tag_frequency(examples: &[Example], folder: &str) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for example in examples {
        for tag in example.caption.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            *counts.entry(tag.to_string()).or_insert(0) += 1;
        }
    }
    BTreeMap::from([(folder.to_string(), counts)])
}
