//! LoRA files: kohya's format (`lora_unet_…`, `.lora_down/.lora_up/.alpha`,
//! `ss_*` metadata), read by every popular tool, and the diffusers/PEFT
//! format (`unet.….lora_A/.lora_B`, alpha in `lora_adapter_metadata`).
//! A file is read without a model (its module names parsed, see `names`),
//! and matched against a model's layers only when it is applied. Tensors
//! keep their stored dtype and shape, so converting a file changes nothing
//! but names and headers. Key tables are in docs/formats/lora-files.md.

mod metadata;
mod names;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};

pub use metadata::{ExportOptions, TrainingInfo, kohya_metadata, lora_identity, without_local_paths};
pub use names::{ASSUMED, FamilyGuess, Naming, detect_family};

use super::lora::{LoraAdapter, LoraNetwork, StoredAs};
use super::pipeline::StableDiffusion;
use super::rewrite::SourceFile;
use super::weights::refuse_pickle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoraFormat {
    /// kohya's sd-scripts format, read by A1111, Forge, ComfyUI and diffusers.
    Kohya,
    /// diffusers' `save_lora_weights` format (PEFT keys).
    Peft,
}

impl LoraFormat {
    pub fn label(self) -> &'static str {
        match self {
            Self::Kohya => "kohya",
            Self::Peft => "PEFT (diffusers)",
        }
    }
}

/// One adapted module: `alpha/rank · up·down` is added to its weight.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// The diffusers module path, e.g. `unet.mid_block.attentions.0.proj_in`.
    pub path: String,
    /// Its name in the file it was read from (`lora_unet_…` or the path).
    pub name: String,
    /// As stored: `[rank, in]`, or `[rank, in, 1, 1]` for a 1×1 convolution.
    pub down: Tensor,
    /// As stored: `[out, rank]` or `[out, rank, 1, 1]`.
    pub up: Tensor,
    pub alpha: f64,
}

impl LoraModule {
    pub fn rank(&self) -> usize {
        self.down.dims()[0]
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank() as f64
    }

    /// Whether the adapted layer is a 1×1 convolution (weights stored 4-D).
    pub fn is_conv(&self) -> bool {
        self.down.rank() == 4
    }

    /// `(down [rank, in], up [out, rank])` as f32 matrices.
    pub fn matrices(&self) -> Result<(Tensor, Tensor)> {
        let matrix = |t: &Tensor| -> Result<Tensor> {
            let (rows, cols) = (t.dims()[0], t.dims()[1]);
            Ok(t.reshape((rows, cols))?.to_dtype(DType::F32)?)
        };
        Ok((matrix(&self.down)?, matrix(&self.up)?))
    }

    /// The dense update `scale·up·down`, `[out, in]`, f32.
    pub fn delta(&self) -> Result<Tensor> {
        let (down, up) = self.matrices()?;
        Ok((up.matmul(&down)? * self.scale())?)
    }
}

#[derive(Debug, Clone)]
pub struct LoraFile {
    pub format: LoraFormat,
    /// The family its names and widths say it is for.
    pub family: FamilyGuess,
    /// How its modules are named for that family (kohya's SDXL block names).
    pub naming: Naming,
    /// Sorted by path.
    pub modules: Vec<LoraModule>,
    pub metadata: BTreeMap<String, String>,
    /// File modules Easel cannot use: names it does not know, layers the
    /// model does not have, or weights that are not matrices (LoCon 3×3).
    pub unmatched: Vec<String>,
}

/// A stored weight as a matrix-shaped LoRA factor: `[a, b]` or `[a, b, 1, 1]`.
fn is_matrix_like(tensor: &Tensor) -> bool {
    matches!(tensor.dims(), [_, _] | [_, _, 1, 1])
}

/// PEFT's alpha of a module: its `alpha_pattern` entry (exact, or a suffix
/// of the path), else the component's `lora_alpha`, else the rank (diffusers' default).
fn peft_alpha(adapter: &serde_json::Map<String, serde_json::Value>, path: &str, rank: usize) -> f64 {
    let (component, module) = path.split_once('.').unwrap_or(("unet", path));
    let pattern = adapter.get(&format!("{component}.alpha_pattern")).and_then(|p| p.as_object()).and_then(|p| {
        p.iter().find(|(key, _)| module == key.as_str() || module.ends_with(&format!(".{key}"))).map(|(_, v)| v)
    });
    pattern
        .and_then(|v| v.as_f64())
        .or_else(|| adapter.get(&format!("{component}.lora_alpha")).and_then(|v| v.as_f64()))
        .unwrap_or(rank as f64)
}

fn scalar(tensor: &Tensor) -> Result<f64> {
    Ok(tensor.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.first().copied().unwrap_or(f64::NAN))
}

impl LoraFile {
    /// Reads a kohya or PEFT file on its own, guessing the family it is for.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_as(path, None)
    }

    /// Reads a file for `model`: only modules that name one of its layers are kept.
    pub fn read(path: &Path, model: &mut StableDiffusion) -> Result<Self> {
        let naming = Naming { family: model.family, layers_per_block: model.unet.config.layers_per_block };
        let mut file = Self::open_as(path, Some(naming))?;
        let layers: Vec<String> = model.lora_layers().into_iter().map(|(path, _)| path).collect();
        let (kept, other): (Vec<_>, Vec<_>) = file.modules.into_iter().partition(|m| layers.contains(&m.path));
        file.modules = kept;
        file.unmatched.extend(other.into_iter().map(|m| m.name));
        if file.modules.is_empty() {
            let none = match file.unmatched.len() {
                1 => "its one module matches no layer".to_string(),
                n => format!("none of its {n} modules match a layer"),
            };
            bail!(
                "{}: {none} of this {} model (a LoRA for another model family?); first: {}",
                path.display(),
                model.family.label(),
                file.unmatched.first().map_or("none", String::as_str)
            );
        }
        Ok(file)
    }

    fn open_as(path: &Path, naming: Option<Naming>) -> Result<Self> {
        refuse_pickle(path)?;
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        let source = SourceFile::open(path)?;
        let metadata = source.metadata().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
        Self::from_tensors(&source, metadata, naming).with_context(|| path.display().to_string())
    }

    fn from_tensors(source: &SourceFile, metadata: BTreeMap<String, String>, naming: Option<Naming>) -> Result<Self> {
        let names = source.names();
        let load = |key: &str| source.tensor(key);
        let (format, suffixes) = if names.iter().any(|k| k.ends_with(".lora_down.weight")) {
            (LoraFormat::Kohya, (".lora_down.weight", ".lora_up.weight"))
        } else if names.iter().any(|k| k.ends_with(".lora_A.weight")) {
            (LoraFormat::Peft, (".lora_A.weight", ".lora_B.weight"))
        } else if names.iter().any(|k| k.starts_with("model.diffusion_model.") || k.starts_with("down_blocks.")) {
            bail!("this is a model's weights, not a LoRA")
        } else {
            bail!("no `.lora_down.weight` (kohya) or `.lora_A.weight` (PEFT) keys: not a LoRA this version reads")
        };
        let adapter: serde_json::Map<String, serde_json::Value> = match metadata.get("lora_adapter_metadata") {
            Some(text) => serde_json::from_str(text).context("lora_adapter_metadata is not a JSON object")?,
            None => serde_json::Map::new(),
        };
        // Parsing names does not depend on the family, only SGM block numbering does.
        let parse_naming = naming.unwrap_or(Naming::standard(super::Family::Sdxl));
        let mut modules = Vec::new();
        let mut unmatched = Vec::new();
        let present: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut down_keys: Vec<&String> = names.iter().filter(|k| k.ends_with(suffixes.0)).collect();
        down_keys.sort();
        for down_key in down_keys {
            let name = down_key.trim_end_matches(suffixes.0);
            let path = match format {
                LoraFormat::Kohya => parse_naming.path(name),
                LoraFormat::Peft => ["unet.", "text_encoder.", "text_encoder_2."]
                    .iter()
                    .any(|component| name.starts_with(component))
                    .then(|| name.to_string()),
            };
            let up_key = format!("{name}{}", suffixes.1);
            let (down, up) = (load(down_key)?, load(&up_key).map_err(|_| anyhow!("`{up_key}` is missing"))?);
            let Some(path) = path.filter(|_| is_matrix_like(&down) && is_matrix_like(&up)) else {
                unmatched.push(name.to_string());
                continue;
            };
            if down.dims()[0] != up.dims()[1] {
                bail!("`{name}`: down is {:?} but up is {:?}: their ranks differ", down.dims(), up.dims());
            }
            let rank = down.dims()[0];
            let alpha = match format {
                LoraFormat::Kohya => match present.get(format!("{name}.alpha").as_str()) {
                    Some(key) => scalar(&load(key)?)?,
                    None => rank as f64,
                },
                LoraFormat::Peft => peft_alpha(&adapter, &path, rank),
            };
            modules.push(LoraModule { path, name: name.to_string(), down, up, alpha });
        }
        modules.sort_by(|a, b| a.path.cmp(&b.path));
        let widths: Vec<(String, usize)> = modules.iter().map(|m| (m.path.clone(), m.down.dims()[1])).collect();
        let keys: Vec<&str> = names.iter().map(String::as_str).collect();
        let family = match naming {
            Some(naming) => FamilyGuess { family: naming.family, evidence: "the model" },
            None => detect_family(&keys, &metadata, &widths),
        };
        let naming = naming.unwrap_or(Naming::standard(family.family));
        Ok(Self { format, family, naming, modules, metadata, unmatched })
    }

    /// A trainable network as a file's modules, under `naming`.
    pub fn from_network(network: &LoraNetwork, naming: Naming, metadata: BTreeMap<String, String>) -> Result<Self> {
        let stored = |tensor: &Tensor, stored_as: StoredAs| -> Result<Tensor> {
            let tensor = tensor.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
            Ok(match stored_as {
                StoredAs::Linear => tensor,
                StoredAs::Conv1x1 => tensor.unsqueeze(2)?.unsqueeze(3)?,
            })
        };
        let mut modules = network
            .modules
            .iter()
            .map(|m| {
                Ok(LoraModule {
                    path: m.path.clone(),
                    name: naming.kohya(&m.path).unwrap_or_else(|| m.path.clone()),
                    down: stored(m.down.as_tensor(), m.stored_as)?,
                    up: stored(m.up.as_tensor(), m.stored_as)?,
                    alpha: network.alpha,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        modules.sort_by(|a, b| a.path.cmp(&b.path));
        let family = FamilyGuess { family: naming.family, evidence: "the model" };
        Ok(Self { format: LoraFormat::Kohya, family, naming, modules, metadata, unmatched: Vec::new() })
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
            let (down, up) = module.matrices()?;
            let (rank, input) = down.dims2()?;
            let output = up.dims()[0];
            if input != layer.in_features() || output != layer.out_features() {
                bail!(
                    "{label}: `{}` is {output}×{input} with rank {rank}, but the model's layer is {}×{}: a LoRA for another model?",
                    module.path,
                    layer.out_features(),
                    layer.in_features()
                );
            }
            layer.adapters.push(LoraAdapter {
                down: down.to_device(&device)?,
                up: up.to_device(&device)?,
                scale: weight * module.scale(),
                source: source.clone(),
            });
        }
        Ok(())
    }

    /// The tensors of this file in `format`: its stored weights under the
    /// format's names (kohya: alpha as a scalar in the weights' dtype).
    pub fn tensors(&self, format: LoraFormat) -> Result<Vec<(String, Tensor)>> {
        let mut tensors = Vec::with_capacity(self.modules.len() * 3);
        for module in &self.modules {
            match format {
                LoraFormat::Kohya => {
                    let name = self
                        .naming
                        .kohya(&module.path)
                        .ok_or_else(|| anyhow!("`{}` has no kohya name", module.path))?;
                    let alpha = Tensor::new(module.alpha as f32, &Device::Cpu)?.to_dtype(module.down.dtype())?;
                    tensors.push((format!("{name}.lora_down.weight"), module.down.clone()));
                    tensors.push((format!("{name}.lora_up.weight"), module.up.clone()));
                    tensors.push((format!("{name}.alpha"), alpha));
                }
                LoraFormat::Peft => {
                    tensors.push((format!("{}.lora_A.weight", module.path), module.down.clone()));
                    tensors.push((format!("{}.lora_B.weight", module.path), module.up.clone()));
                }
            }
        }
        Ok(tensors)
    }

    /// The header for `format`: this file's metadata, plus PEFT's loading
    /// header (`format`, `lora_adapter_metadata`) or without it for kohya.
    pub fn header(&self, format: LoraFormat) -> Result<BTreeMap<String, String>> {
        let mut header = self.metadata.clone();
        header.remove("lora_adapter_metadata");
        match format {
            LoraFormat::Kohya => {
                header.remove("format");
            }
            LoraFormat::Peft => {
                header.insert("format".into(), "pt".into());
                header.insert("lora_adapter_metadata".into(), serde_json::to_string_pretty(&self.adapter_metadata())?);
            }
        }
        Ok(header)
    }

    /// PEFT's per-component config: the most common rank and alpha, with
    /// `rank_pattern` / `alpha_pattern` for the modules that differ.
    fn adapter_metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut components: BTreeMap<&str, Vec<&LoraModule>> = BTreeMap::new();
        for module in &self.modules {
            components.entry(module.path.split('.').next().unwrap_or("unet")).or_default().push(module);
        }
        let most_common = |values: Vec<String>| -> String {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for value in values {
                *counts.entry(value).or_default() += 1;
            }
            counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v).unwrap_or_default()
        };
        let mut adapter = serde_json::Map::new();
        for (component, modules) in components {
            let number = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or_default();
            let rank = most_common(modules.iter().map(|m| m.rank().to_string()).collect());
            let alpha = most_common(modules.iter().map(|m| format!("{:?}", m.alpha)).collect());
            let inner = |m: &LoraModule| m.path.split_once('.').map_or(m.path.clone(), |(_, rest)| rest.to_string());
            let mut targets: Vec<String> = Vec::new();
            let (mut rank_pattern, mut alpha_pattern) = (serde_json::Map::new(), serde_json::Map::new());
            for module in &modules {
                let inner = inner(module);
                let leaf =
                    if inner.ends_with("to_out.0") { "to_out.0" } else { inner.rsplit('.').next().unwrap_or(&inner) };
                if !targets.iter().any(|t| t == leaf) {
                    targets.push(leaf.to_string());
                }
                if module.rank().to_string() != rank {
                    rank_pattern.insert(inner.clone(), module.rank().into());
                }
                if format!("{:?}", module.alpha) != alpha {
                    alpha_pattern.insert(inner, module.alpha.into());
                }
            }
            adapter.insert(format!("{component}.r"), number(&rank));
            adapter.insert(format!("{component}.lora_alpha"), number(&alpha));
            adapter.insert(format!("{component}.target_modules"), targets.into());
            if !rank_pattern.is_empty() {
                adapter.insert(format!("{component}.rank_pattern"), rank_pattern.into());
            }
            if !alpha_pattern.is_empty() {
                adapter.insert(format!("{component}.alpha_pattern"), alpha_pattern.into());
            }
        }
        adapter
    }

    /// Writes this file in `format`, atomically.
    pub fn save(&self, path: &Path, format: LoraFormat) -> Result<()> {
        let header: HashMap<String, String> = self.header(format)?.into_iter().collect();
        let bytes = safetensors::serialize(self.tensors(format)?, Some(header))
            .map_err(|e| anyhow!("cannot encode {}: {e}", path.display()))?;
        crate::fsutil::atomic_write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Writes `network` in kohya's format, atomically.
pub fn save_kohya(
    path: &Path,
    network: &LoraNetwork,
    model: &StableDiffusion,
    metadata: BTreeMap<String, String>,
) -> Result<()> {
    let naming = Naming { family: model.family, layers_per_block: model.unet.config.layers_per_block };
    LoraFile::from_network(network, naming, metadata)?.save(path, LoraFormat::Kohya)
}

/// Writes `network` as diffusers' `save_lora_weights` does: PEFT keys and
/// the alpha in `lora_adapter_metadata`.
pub fn save_peft(path: &Path, network: &LoraNetwork, model: &StableDiffusion) -> Result<()> {
    let naming = Naming { family: model.family, layers_per_block: model.unet.config.layers_per_block };
    LoraFile::from_network(network, naming, BTreeMap::new())?.save(path, LoraFormat::Peft)
}

/// Copies a LoRA file to `out` in another format, with a new title and
/// local paths removed (or all training metadata stripped).
pub fn export(source: &Path, out: &Path, options: &ExportOptions) -> Result<LoraFile> {
    let mut file = LoraFile::open(source)?;
    file.metadata = options.header(&file.metadata);
    file.save(out, options.format)?;
    Ok(file)
}
