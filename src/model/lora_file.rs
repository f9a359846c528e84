//! LoRA files: kohya's format (`lora_unet_…`, `.lora_down/.lora_up/.alpha`,
//! `ss_*` metadata), read by every popular tool, and the diffusers/PEFT
//! format (`unet.….lora_A/.lora_B`, alpha in `lora_adapter_metadata`).
//! Key tables are in docs/formats/lora-files.md.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};

use super::Family;
use super::lora::{LoraAdapter, LoraNetwork, StoredAs};
use super::pipeline::StableDiffusion;
use super::schedule::PredictionType;
use super::single_file::unet_ldm_module;
use super::weights::refuse_pickle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraFormat {
    Kohya,
    Peft,
}

/// One adapted module read from a file.
#[derive(Debug, Clone)]
pub struct ModuleWeights {
    /// Our module path, e.g. `unet.mid_block.attentions.0.proj_in`.
    pub path: String,
    /// `[rank, in]`.
    pub down: Tensor,
    /// `[out, rank]`.
    pub up: Tensor,
    pub alpha: f64,
}

#[derive(Debug, Clone)]
pub struct LoraFile {
    pub format: LoraFormat,
    pub modules: Vec<ModuleWeights>,
    pub metadata: HashMap<String, String>,
    /// File modules with no matching layer in this model (another family, or
    /// layer kinds Easel does not adapt).
    pub unmatched: Vec<String>,
}

/// The kohya key of a module path for a model family: SD1/SD2 keep the
/// diffusers path, SDXL uses the original SGM block names.
pub fn kohya_name(family: Family, path: &str, layers_per_block: usize) -> Option<String> {
    let flat = |prefix: &str, module: &str| format!("{prefix}{}", module.replace('.', "_"));
    if let Some(module) = path.strip_prefix("unet.") {
        return Some(match family {
            Family::Sdxl => flat("lora_unet_", &unet_ldm_module(module, layers_per_block)?),
            _ => flat("lora_unet_", module),
        });
    }
    if let Some(module) = path.strip_prefix("text_encoder_2.") {
        return Some(flat("lora_te2_", module));
    }
    let module = path.strip_prefix("text_encoder.")?;
    Some(flat(if family == Family::Sdxl { "lora_te1_" } else { "lora_te_" }, module))
}

/// kohya module name → our path, for every adaptable layer of `model`.
/// For SDXL the diffusers-style names some tools write are accepted too.
fn kohya_table(model: &mut StableDiffusion) -> HashMap<String, String> {
    let (family, layers) = (model.family, model.unet.config.layers_per_block);
    let mut table = HashMap::new();
    for (path, _) in model.lora_layers() {
        if family == Family::Sdxl
            && let Some(name) = kohya_name(Family::Sd1, &path, layers).filter(|n| n.starts_with("lora_unet_"))
        {
            table.insert(name, path.clone());
        }
        if let Some(name) = kohya_name(family, &path, layers) {
            table.insert(name, path);
        }
    }
    table
}

/// A `[r, in, 1, 1]` conv LoRA weight as `[r, in]`; larger kernels are refused.
fn as_matrix(tensor: Tensor, key: &str) -> Result<Tensor> {
    match tensor.dims() {
        [_, _] => Ok(tensor),
        [a, b, 1, 1] => Ok(tensor.reshape((*a, *b))?),
        dims => bail!("`{key}` has shape {dims:?}: only linear and 1×1 conv LoRA layers are supported (not LoCon 3×3)"),
    }
}

fn read(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    refuse_pickle(path)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).with_context(|| format!("{}", path.display()))?;
    Ok((tensors, metadata))
}

/// The modules of a LoRA file whose keys end in `suffixes` (down, up):
/// each named module is matched to a model path by `resolve` (unmatched ones
/// are listed) and given its alpha by `alpha(name, path, rank)`.
fn collect_modules(
    tensors: &HashMap<String, Tensor>,
    suffixes: (&str, &str),
    resolve: impl Fn(&str) -> Option<String>,
    alpha: impl Fn(&str, &str, f64) -> Result<f64>,
) -> Result<(Vec<ModuleWeights>, Vec<String>)> {
    let (down_suffix, up_suffix) = suffixes;
    let mut modules = Vec::new();
    let mut unmatched = Vec::new();
    let mut names: Vec<&String> = tensors.keys().filter(|k| k.ends_with(down_suffix)).collect();
    names.sort();
    for down_key in names {
        let name = down_key.trim_end_matches(down_suffix);
        let Some(path) = resolve(name) else {
            unmatched.push(name.to_string());
            continue;
        };
        let up_key = format!("{name}{up_suffix}");
        let up = tensors.get(&up_key).ok_or_else(|| anyhow!("`{up_key}` is missing"))?;
        let down = as_matrix(tensors[down_key].clone(), down_key)?;
        let alpha = alpha(name, &path, down.dim(0)? as f64)?;
        modules.push(ModuleWeights { path, down, up: as_matrix(up.clone(), &up_key)?, alpha });
    }
    Ok((modules, unmatched))
}

impl LoraFile {
    /// Reads a kohya or PEFT file, matching its modules to `model`'s layers.
    pub fn read(path: &Path, model: &mut StableDiffusion) -> Result<Self> {
        let (tensors, metadata) = read(path)?;
        let file = if tensors.keys().any(|k| k.ends_with(".lora_down.weight")) {
            Self::from_kohya(tensors, metadata, model)
        } else if tensors.keys().any(|k| k.ends_with(".lora_A.weight")) {
            Self::from_peft(tensors, metadata, model)
        } else {
            bail!(
                "{}: no `.lora_down.weight` (kohya) or `.lora_A.weight` (PEFT) keys: not a LoRA this version reads",
                path.display()
            )
        };
        let file = file.with_context(|| format!("{}", path.display()))?;
        if file.modules.is_empty() {
            bail!(
                "{}: none of its {} modules match a layer of this {} model (a LoRA for another model family?); first: {}",
                path.display(),
                file.unmatched.len(),
                model.family.label(),
                file.unmatched.first().map_or("none", String::as_str)
            );
        }
        Ok(file)
    }

    fn from_kohya(
        tensors: HashMap<String, Tensor>,
        metadata: HashMap<String, String>,
        model: &mut StableDiffusion,
    ) -> Result<Self> {
        let table = kohya_table(model);
        let (modules, unmatched) = collect_modules(
            &tensors,
            (".lora_down.weight", ".lora_up.weight"),
            |name| table.get(name).cloned(),
            |name, _, rank| match tensors.get(&format!("{name}.alpha")) {
                Some(alpha) => {
                    Ok(alpha.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.first().copied().unwrap_or(rank))
                }
                None => Ok(rank),
            },
        )?;
        Ok(Self { format: LoraFormat::Kohya, modules, metadata, unmatched })
    }

    fn from_peft(
        tensors: HashMap<String, Tensor>,
        metadata: HashMap<String, String>,
        model: &mut StableDiffusion,
    ) -> Result<Self> {
        let adapter: serde_json::Map<String, serde_json::Value> = match metadata.get("lora_adapter_metadata") {
            Some(text) => serde_json::from_str(text).context("lora_adapter_metadata is not a JSON object")?,
            None => serde_json::Map::new(),
        };
        let known: Vec<String> = model.lora_layers().into_iter().map(|(path, _)| path).collect();
        let (modules, unmatched) = collect_modules(
            &tensors,
            (".lora_A.weight", ".lora_B.weight"),
            |name| known.iter().find(|k| *k == name).cloned(),
            |_, path, rank| {
                // Without metadata diffusers takes alpha = rank; alpha_pattern
                // holds per-module exceptions keyed by module path.
                let component = path.split('.').next().unwrap_or("unet");
                let module = path.split_once('.').map_or(path, |(_, rest)| rest);
                let pattern = adapter
                    .get(&format!("{component}.alpha_pattern"))
                    .and_then(|p| p.get(module))
                    .and_then(|v| v.as_f64());
                Ok(pattern
                    .or_else(|| adapter.get(&format!("{component}.lora_alpha")).and_then(|v| v.as_f64()))
                    .unwrap_or(rank))
            },
        )?;
        Ok(Self { format: LoraFormat::Peft, modules, metadata, unmatched })
    }

    /// Attaches every module to `model` with strength `weight`, labelled `label`.
    pub fn apply(&self, model: &mut StableDiffusion, weight: f64, label: &str) -> Result<()> {
        let device = model.device.clone();
        let source: Arc<str> = label.into();
        let mut layers = model.lora_layers();
        for module in &self.modules {
            let Some((_, layer)) = layers.iter_mut().find(|(path, _)| *path == module.path) else {
                bail!("{label}: no layer `{}` in this model", module.path);
            };
            let (rank, input) = module.down.dims2()?;
            let (output, up_rank) = module.up.dims2()?;
            if input != layer.in_features() || output != layer.out_features() || up_rank != rank {
                bail!(
                    "{label}: `{}` is {output}×{input} with rank {rank}/{up_rank}, but the model's layer is {}×{}: a LoRA for another model?",
                    module.path,
                    layer.out_features(),
                    layer.in_features()
                );
            }
            layer.adapters.push(LoraAdapter {
                down: module.down.to_dtype(DType::F32)?.to_device(&device)?,
                up: module.up.to_dtype(DType::F32)?.to_device(&device)?,
                scale: weight * module.alpha / rank as f64,
                source: source.clone(),
            });
        }
        Ok(())
    }
}

/// What kohya's `ss_*` metadata records about a training run.
#[derive(Debug, Clone, Default)]
pub struct TrainingInfo {
    pub output_name: String,
    pub base_model_name: String,
    pub resolution: (usize, usize),
    pub steps: u64,
    pub num_train_images: usize,
    /// Folder name → tag → count, from the captions.
    pub tag_frequency: BTreeMap<String, BTreeMap<String, usize>>,
    pub seed: u64,
    pub learning_rate: f64,
    /// Unix times, seconds.
    pub started_at: f64,
    pub finished_at: f64,
}

/// kohya's version string and the SAI model-spec architecture for a model.
fn version_strings(family: Family, prediction: PredictionType) -> (&'static str, &'static str) {
    let v = prediction == PredictionType::VPrediction;
    match (family, v) {
        (Family::Sd1, false) => ("sd_v1", "stable-diffusion-v1/lora"),
        (Family::Sd1, true) => ("sd_v1_v", "stable-diffusion-v1/lora"),
        (Family::Sd2, false) => ("sd_v2", "stable-diffusion-v2-512/lora"),
        (Family::Sd2, true) => ("sd_v2_v", "stable-diffusion-v2-768-v/lora"),
        (Family::Sdxl, _) => ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora"),
    }
}

/// The header metadata kohya's trainer writes, as far as Easel knows it.
pub fn kohya_metadata(
    network: &LoraNetwork,
    family: Family,
    prediction: PredictionType,
    info: &TrainingInfo,
) -> HashMap<String, String> {
    let (version, architecture) = version_strings(family, prediction);
    let python_bool = |b: bool| if b { "True" } else { "False" }.to_string();
    let mut m = HashMap::new();
    m.insert("ss_network_module".into(), "networks.lora".into());
    m.insert("ss_network_dim".into(), network.rank.to_string());
    m.insert("ss_network_alpha".into(), format!("{:?}", network.alpha));
    m.insert("ss_base_model_version".into(), version.into());
    m.insert("ss_v2".into(), python_bool(family == Family::Sd2));
    m.insert("ss_v_parameterization".into(), python_bool(prediction == PredictionType::VPrediction));
    m.insert("ss_sd_model_name".into(), info.base_model_name.clone());
    m.insert("ss_resolution".into(), format!("({}, {})", info.resolution.0, info.resolution.1));
    m.insert("ss_steps".into(), info.steps.to_string());
    m.insert("ss_max_train_steps".into(), info.steps.to_string());
    m.insert("ss_num_train_images".into(), info.num_train_images.to_string());
    m.insert("ss_tag_frequency".into(), serde_json::to_string(&info.tag_frequency).unwrap_or_else(|_| "{}".into()));
    m.insert("ss_output_name".into(), info.output_name.clone());
    m.insert("ss_seed".into(), info.seed.to_string());
    m.insert("ss_learning_rate".into(), format!("{:?}", info.learning_rate));
    m.insert("ss_training_started_at".into(), format!("{:.6}", info.started_at));
    m.insert("ss_training_finished_at".into(), format!("{:.6}", info.finished_at));
    m.insert("ss_training_comment".into(), "trained with Easel".into());
    m.insert("modelspec.sai_model_spec".into(), "1.0.0".into());
    m.insert("modelspec.architecture".into(), architecture.into());
    m.insert("modelspec.implementation".into(), "https://github.com/Stability-AI/generative-models".into());
    m.insert("modelspec.title".into(), info.output_name.clone());
    m.insert(
        "modelspec.prediction_type".into(),
        if prediction == PredictionType::VPrediction { "v" } else { "epsilon" }.into(),
    );
    m
}

/// A weight as stored: 1×1 conv layers keep their 4-D shape.
fn stored(tensor: &Tensor, stored_as: StoredAs) -> Result<Tensor> {
    let tensor = tensor.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    Ok(match stored_as {
        StoredAs::Linear => tensor,
        StoredAs::Conv1x1 => tensor.unsqueeze(2)?.unsqueeze(3)?,
    })
}

fn write(path: &Path, tensors: Vec<(String, Tensor)>, metadata: HashMap<String, String>) -> Result<()> {
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| anyhow!("cannot encode {}: {e}", path.display()))?;
    crate::fsutil::atomic_write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `network` in kohya's format, atomically.
pub fn save_kohya(
    path: &Path,
    network: &LoraNetwork,
    model: &StableDiffusion,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut tensors = Vec::new();
    for module in &network.modules {
        let name = kohya_name(model.family, &module.path, model.unet.config.layers_per_block)
            .ok_or_else(|| anyhow!("`{}` has no kohya name", module.path))?;
        tensors.push((format!("{name}.lora_down.weight"), stored(module.down.as_tensor(), module.stored_as)?));
        tensors.push((format!("{name}.lora_up.weight"), stored(module.up.as_tensor(), module.stored_as)?));
        tensors.push((format!("{name}.alpha"), Tensor::new(network.alpha as f32, &Device::Cpu)?));
    }
    write(path, tensors, metadata)
}

/// Writes `network` as diffusers' `save_lora_weights` does: PEFT keys and
/// the alpha in `lora_adapter_metadata`.
pub fn save_peft(path: &Path, network: &LoraNetwork) -> Result<()> {
    let mut tensors = Vec::new();
    let mut targets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for module in &network.modules {
        tensors.push((format!("{}.lora_A.weight", module.path), stored(module.down.as_tensor(), module.stored_as)?));
        tensors.push((format!("{}.lora_B.weight", module.path), stored(module.up.as_tensor(), module.stored_as)?));
        let (component, rest) = module.path.split_once('.').unwrap_or(("unet", &module.path));
        let leaf = rest.rsplit('.').next().unwrap_or(rest);
        let leaf = if rest.ends_with("to_out.0") { "to_out.0" } else { leaf };
        let list = targets.entry(component).or_default();
        if !list.iter().any(|t| t == leaf) {
            list.push(leaf.to_string());
        }
    }
    let mut adapter = serde_json::Map::new();
    for (component, target_modules) in targets {
        adapter.insert(format!("{component}.r"), network.rank.into());
        adapter.insert(format!("{component}.lora_alpha"), network.alpha.into());
        adapter.insert(format!("{component}.target_modules"), target_modules.into());
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("lora_adapter_metadata".to_string(), serde_json::to_string_pretty(&adapter)?),
    ]);
    write(path, tensors, metadata)
}
