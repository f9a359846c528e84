//! `easel generate`: text to image with a base model and optional LoRAs,
//! outside the workbench. A project draws with its newest trained LoRA
//! unless LoRAs are given or `--no-lora` says not to; the output paths are
//! checked before the model loads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device};

use crate::console::ProgressLine;
use crate::model::base::BaseModel;
use crate::model::lora_file::LoraFile;
use crate::model::pipeline::{LoadOptions, StableDiffusion};
use crate::model::sampling::{self, SampleRequest, SeededNoise};
use crate::project::Project;
use crate::train::list_runs;
use crate::train::run_dir::final_lora;

/// A LoRA file and its strength, from `FILE[:WEIGHT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub weight: f64,
}

impl std::str::FromStr for LoraSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        // A trailing `:number` is the weight; anything else is part of the path.
        if let Some((path, weight)) = text.rsplit_once(':')
            && let Ok(weight) = weight.parse::<f64>()
        {
            return Ok(Self { path: path.into(), weight });
        }
        Ok(Self { path: text.into(), weight: 1.0 })
    }
}

/// Everything `easel generate` was asked for.
#[derive(Debug, Clone)]
pub struct GenerateArgs {
    pub project: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub config_folder: Option<PathBuf>,
    /// The LoRAs to apply; with a project, none given means its newest trained one.
    pub loras: Vec<LoraSpec>,
    /// With a project: the base model alone.
    pub no_lora: bool,
    /// The request's width and height are filled in from this, else from
    /// the given latents, else the model's native size.
    pub request: SampleRequest,
    pub size: Option<(usize, usize)>,
    pub latents: Option<PathBuf>,
    pub out: PathBuf,
    pub save_latents: Option<PathBuf>,
    pub half: Option<DType>,
}

/// Parses `WxH`.
pub fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let (w, h) =
        text.split_once(['x', 'X', '×']).ok_or_else(|| format!("`{text}`: expected WIDTHxHEIGHT, e.g. 512x512"))?;
    let parse =
        |s: &str| s.trim().parse::<usize>().map_err(|_| format!("`{text}`: expected WIDTHxHEIGHT, e.g. 512x512"));
    Ok((parse(w)?, parse(h)?))
}

/// The model to load and the LoRAs to apply on it.
fn model_and_loras(args: &GenerateArgs) -> Result<(PathBuf, Vec<LoraSpec>)> {
    match (&args.project, &args.model) {
        (Some(_), Some(_)) => bail!("give either --project or --model, not both"),
        (Some(dir), None) => {
            let project = Project::open(dir)?;
            let model = project.base_model_path(&project.config.model.base)?;
            let loras = if args.loras.is_empty() && !args.no_lora {
                newest_lora(&project).into_iter().collect()
            } else {
                args.loras.clone()
            };
            Ok((model, loras))
        }
        (None, Some(model)) => {
            // Any other name is a path, taken as given.
            let base = if model.as_os_str() == BaseModel::BUILTIN_TINY {
                BaseModel::BuiltinTiny
            } else {
                BaseModel::Path(model.clone())
            };
            // Without a project, the built-in model is cached in the temp folder.
            let model = base.resolve(Path::new(""), &std::env::temp_dir().join("easel-cache"))?;
            Ok((model, args.loras.clone()))
        }
        (None, None) => bail!("say which model: --project DIR (its base model) or --model PATH"),
    }
}

/// The project's newest trained LoRA at full strength: the newest run's
/// final LoRA, else its newest checkpoint (a run stopped by a kill, or one
/// still training), passing over runs that have neither yet. Which one (or
/// that there is none) is said on stderr, since it changes the picture.
fn newest_lora(project: &Project) -> Option<LoraSpec> {
    let name = project.name();
    let found = list_runs(&project.runs_dir()).into_iter().rev().find_map(|run| {
        let final_lora = final_lora(&run.dir, &name);
        if final_lora.is_file() {
            return Some((run.id, final_lora, String::new()));
        }
        let checkpoint = run.checkpoints.last()?;
        Some((run.id, checkpoint.lora.clone(), format!(" (its checkpoint at step {})", checkpoint.step)))
    });
    let Some((run, path, which)) = found else {
        eprintln!("no trained LoRA in {}: the base model alone", project.runs_dir().display());
        return None;
    };
    let shown = path.strip_prefix(&project.root).unwrap_or(&path);
    eprintln!("using LoRA {}{which} from run {run}; --no-lora for the base model alone", shown.display());
    Some(LoraSpec { path, weight: 1.0 })
}

fn read_latents(path: &Path, device: &Device) -> Result<candle_core::Tensor> {
    crate::model::weights::refuse_pickle(path)?;
    let tensors = candle_core::safetensors::load(path, device)
        .with_context(|| format!("cannot read latents from {}", path.display()))?;
    match tensors.len() {
        1 => Ok(tensors.into_values().next().expect("one tensor")),
        n => {
            let names: Vec<&String> = tensors.keys().collect();
            tensors.get("latents").cloned().ok_or_else(|| {
                anyhow!("{}: {n} tensors ({names:?}); name the initial latents `latents`", path.display())
            })
        }
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    // Before anything is loaded or drawn: a picture that cannot be saved is minutes lost.
    for (flag, path) in [("--out", Some(&args.out)), ("--save-latents", args.save_latents.as_ref())] {
        if let Some(path) = path {
            crate::fsutil::check_writable(path).with_context(|| format!("{flag} {}", path.display()))?;
        }
    }
    let device = crate::device::default_device();
    crate::device::on_compute_threads(&device, || generate(args, &device))
}

fn generate(args: GenerateArgs, device: &Device) -> Result<()> {
    let dtype = args.half.unwrap_or(DType::F32);
    let (path, loras) = model_and_loras(&args)?;
    let started = Instant::now();
    let options =
        LoadOptions { dtype, device: device.clone(), config_folder: args.config_folder.clone(), prediction: None };
    let mut model = StableDiffusion::load(&path, &options)?;
    eprintln!(
        "loaded {} ({}) in {:.1}s on {:?}",
        path.display(),
        model.family.label(),
        started.elapsed().as_secs_f64(),
        device
    );
    for (index, lora) in loras.iter().enumerate() {
        let file = LoraFile::read(&lora.path, &mut model)?;
        file.apply(&mut model, lora.weight, &format!("lora{index}"))?;
        eprintln!(
            "applied {} × {} ({})",
            lora.path.display(),
            lora.weight,
            crate::words::counted(file.modules.len(), "module")
        );
        if !file.unmatched.is_empty() {
            eprintln!(
                "warning: {} of {} {} no matching layer and {} skipped (first: {})",
                crate::words::counted(file.unmatched.len(), "module"),
                lora.path.display(),
                crate::words::agreeing(file.unmatched.len(), "has", "have"),
                crate::words::agreeing(file.unmatched.len(), "was", "were"),
                file.unmatched[0]
            );
        }
    }
    let mut request = args.request.clone();
    if let Some(latents) = &args.latents {
        request.initial_latents = Some(read_latents(latents, device)?);
    }
    let factor = model.vae.config.spatial_factor();
    (request.width, request.height) = match (args.size, &request.initial_latents) {
        (Some(size), _) => size,
        (None, Some(latents)) => (latents.dim(3)? * factor, latents.dim(2)? * factor),
        (None, None) => {
            let side = model.unet.config.sample_size * factor;
            (side, side)
        }
    };
    let mut noise = SeededNoise::new(request.seed);
    let started = Instant::now();
    let mut progress = ProgressLine::stderr();
    let latents = sampling::sample(&model, &request, &mut noise, &mut |step, total, _| {
        progress.show(&format!("{} step {step}/{total}", request.sampler));
    })?;
    progress.finish();
    eprintln!("sampled in {:.2}s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.save_latents {
        let bytes = safetensors::serialize([("latents", latents.to_device(&Device::Cpu)?)], None)
            .map_err(|e| anyhow!("cannot encode latents: {e}"))?;
        crate::fsutil::atomic_write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let image = sampling::decode_image(&model, &latents)?;
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    crate::fsutil::atomic_write(&args.out, &png).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} ({}×{})", args.out.display(), image.width(), image.height());
    Ok(())
}
