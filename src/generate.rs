//! `easel generate`: text to image with a base model and optional LoRAs,
//! outside the workbench.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device};

use crate::model::base::BaseModel;
use crate::model::lora_file::LoraFile;
use crate::model::pipeline::{LoadOptions, StableDiffusion};
use crate::model::sampling::{self, SampleRequest, SeededNoise};
use crate::project::Project;

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
    pub loras: Vec<LoraSpec>,
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

/// The best device this build can use: the first CUDA GPU when built with
/// `--features cuda` and one is present, else the CPU.
fn model_path(args: &GenerateArgs) -> Result<PathBuf> {
    match (&args.project, &args.model) {
        (Some(_), Some(_)) => bail!("give either --project or --model, not both"),
        (Some(dir), None) => {
            let project = Project::open(dir)?;
            project.base_model_path(&project.config.model.base)
        }
        (None, Some(model)) => {
            // Any other name is a path, taken as given.
            let base = if model.as_os_str() == BaseModel::BUILTIN_TINY {
                BaseModel::BuiltinTiny
            } else {
                BaseModel::Path(model.clone())
            };
            // Without a project, the built-in model is cached in the temp folder.
            base.resolve(Path::new(""), &std::env::temp_dir().join("easel-cache"))
        }
        (None, None) => bail!("say which model: --project DIR (its base model) or --model PATH"),
    }
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
    let device = crate::device::default_device();
    crate::device::on_compute_threads(&device, || generate(args, &device))
}

fn generate(args: GenerateArgs, device: &Device) -> Result<()> {
    let dtype = args.half.unwrap_or(DType::F32);
    let path = model_path(&args)?;
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
    for (index, lora) in args.loras.iter().enumerate() {
        let file = LoraFile::read(&lora.path, &mut model)?;
        file.apply(&mut model, lora.weight, &format!("lora{index}"))?;
        eprintln!("applied {} × {} ({} modules)", lora.path.display(), lora.weight, file.modules.len());
        if !file.unmatched.is_empty() {
            eprintln!(
                "warning: {} modules of {} have no matching layer and were skipped (first: {})",
                file.unmatched.len(),
                lora.path.display(),
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
    let latents = sampling::sample(&model, &request, &mut noise, &mut |step, total, _| {
        eprint!("\r{} step {step}/{total}", request.sampler);
    })?;
    eprintln!(" ({:.2}s)", started.elapsed().as_secs_f64());
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
