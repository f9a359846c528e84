//! `easel lora extract`: a LoRA from the difference of two models of one
//! family (a fine-tuned checkpoint and its base): per adaptable layer, ΔW =
//! W_tuned − W_base re-factorised by SVD. Layers are read one at a time from
//! the memory-mapped files, in parallel, so two SDXL models are never loaded
//! whole.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::factor::RankChoice;
use super::merge::{ErrorReport, ModuleError};
use crate::model::lora::{LoraTargets, is_unet_target};
use crate::model::lora_file::{FamilyGuess, LoraFile, LoraFormat, LoraModule, Naming, lora_identity};
use crate::model::rewrite::ModelWeights;
use crate::model::schedule::PredictionType;

#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    pub rule: RankChoice,
    pub targets: LoraTargets,
    pub text_encoders: bool,
    /// Layers whose largest change is at most this are left out as unchanged
    /// (kohya's extract uses 1e-4 for the text encoders).
    pub min_diff: f64,
}

pub struct Extracted {
    pub file: LoraFile,
    pub report: ErrorReport,
    /// Layers left out as unchanged.
    pub unchanged: usize,
}

/// The layers a LoRA usually adapts: the UNet's (per `targets`) and, when
/// asked, the text encoders' attention and MLP projections.
fn target_layers(weights: &ModelWeights, options: &ExtractOptions) -> Vec<String> {
    let text =
        [".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.out_proj", ".mlp.fc1", ".mlp.fc2"];
    let mut layers: Vec<String> = weights
        .locations()
        .keys()
        .filter_map(|name| name.strip_suffix(".weight"))
        .filter(|module| {
            if module.starts_with("unet.") {
                is_unet_target(module, options.targets)
            } else {
                options.text_encoders
                    && module.starts_with("text_encoder")
                    && module.contains(".encoder.layers.")
                    && text.iter().any(|suffix| module.ends_with(suffix))
            }
        })
        .map(str::to_string)
        .collect();
    layers.sort();
    layers
}

/// A layer's weight as an f32 `[out, in]` matrix.
fn layer_matrix(weights: &ModelWeights, module: &str) -> Result<Tensor> {
    let layer = weights.layer(module)?;
    let location = weights.location(&format!("{module}.weight")).ok_or_else(|| anyhow!("no layer `{module}`"))?;
    let stored = weights.files[location.file].tensor(layer.key)?;
    let rows = stored.narrow(0, layer.rows.start, layer.rows.len())?;
    Ok(rows.to_dtype(DType::F32)?.reshape((layer.rows.len(), layer.shape[1]))?)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Extracts the LoRA that turns `base` into `tuned`.
pub fn extract(base: &Path, tuned: &Path, options: &ExtractOptions) -> Result<Extracted> {
    let (a, b) = (ModelWeights::open(base)?, ModelWeights::open(tuned)?);
    if a.family != b.family {
        bail!(
            "{} is {} but {} is {}: a LoRA can only be extracted between models of one family",
            base.display(),
            a.family.label(),
            tuned.display(),
            b.family.label()
        );
    }
    let layers = target_layers(&a, options);
    if layers.is_empty() {
        bail!("{}: no layers a LoRA adapts", base.display());
    }
    if let Some(missing) = layers.iter().find(|m| b.location(&format!("{m}.weight")).is_none()) {
        bail!("{} has no layer `{missing}`, which {} has: not the same architecture", tuned.display(), base.display());
    }
    let done = AtomicUsize::new(0);
    let progress = std::io::stderr().is_terminal();
    let results: Vec<Option<(LoraModule, ModuleError)>> = layers
        .par_iter()
        .map(|module| {
            let (wa, wb) = (layer_matrix(&a, module)?, layer_matrix(&b, module)?);
            if wa.dims() != wb.dims() {
                bail!("`{module}` is {:?} in {} but {:?} in {}", wa.dims(), base.display(), wb.dims(), tuned.display());
            }
            let delta = (wb - wa)?;
            let largest = delta.abs()?.max_all()?.to_scalar::<f32>()? as f64;
            let result = if largest <= options.min_diff {
                None
            } else {
                let factors = options.rule.dense(&delta).with_context(|| format!("`{module}`"))?;
                let conv = a.layer(module)?.shape.len() == 4;
                let (down, up) = if conv {
                    (factors.down.unsqueeze(2)?.unsqueeze(3)?, factors.up.unsqueeze(2)?.unsqueeze(3)?)
                } else {
                    (factors.down, factors.up)
                };
                let error =
                    ModuleError { path: module.clone(), rank: factors.rank, norm: factors.norm, error: factors.error };
                let module =
                    LoraModule { path: module.clone(), name: module.clone(), down, up, alpha: factors.rank as f64 };
                Some((module, error))
            };
            let count = done.fetch_add(1, Ordering::Relaxed) + 1;
            if progress {
                eprint!("\rextracting: {count}/{} layers", layers.len());
                let _ = std::io::stderr().flush();
            }
            Ok(result)
        })
        .collect::<Result<_>>()?;
    if progress {
        eprintln!();
    }
    let unchanged = results.iter().filter(|r| r.is_none()).count();
    let (modules, errors): (Vec<LoraModule>, Vec<ModuleError>) = results.into_iter().flatten().unzip();
    if modules.is_empty() {
        bail!("{} and {} do not differ in any layer a LoRA adapts", base.display(), tuned.display());
    }
    let naming = Naming::standard(a.family);
    let modules = modules
        .into_iter()
        .map(|m| LoraModule { name: naming.kohya(&m.path).unwrap_or(m.path.clone()), ..m })
        .collect();
    let mut metadata: BTreeMap<String, String> = lora_identity(a.family, PredictionType::Epsilon);
    metadata.remove("modelspec.prediction_type");
    metadata.insert("ss_sd_model_name".into(), file_name(base));
    let description = format!("extracted with Easel: {} − {} ({})", file_name(tuned), file_name(base), options.rule);
    metadata.insert("ss_training_comment".into(), description.clone());
    metadata.insert("modelspec.description".into(), description);
    let family = FamilyGuess { family: a.family, evidence: "the models" };
    let file = LoraFile { format: LoraFormat::Kohya, family, naming, modules, metadata, unmatched: Vec::new() };
    Ok(Extracted { file, report: ErrorReport { modules: errors }, unchanged })
}
