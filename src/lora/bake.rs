//! `easel lora bake`: LoRAs folded into a model's weights, written as a
//! diffusers folder or an original-layout single file. Everything the LoRAs
//! need from the model is checked from its headers before a byte is
//! written; the weights then stream through `model::rewrite`, one tensor at
//! a time, each ΔW made only when its tensor is written.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use candle_core::Tensor;

use super::merge::Weighted;
use crate::model::lora_file::{ASSUMED, LoraFile};
use crate::model::rewrite::{BakeOptions, BakeReport, Edits, Layout, ModelWeights, OutputLayout, bake_weights};

/// LoRAs at their weights, as the layer updates a bake asks for.
pub struct LoraEdits {
    loras: Vec<(LoraFile, f64)>,
    /// Module path → (LoRA, module) indexes adapting it.
    by_module: BTreeMap<String, Vec<(usize, usize)>>,
}

impl LoraEdits {
    pub fn new(loras: Vec<(LoraFile, f64)>) -> Self {
        let mut by_module: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, (file, _)) in loras.iter().enumerate() {
            for (j, module) in file.modules.iter().enumerate() {
                by_module.entry(module.path.clone()).or_default().push((i, j));
            }
        }
        Self { loras, by_module }
    }
}

impl Edits for LoraEdits {
    fn modules(&self) -> Vec<String> {
        self.by_module.keys().cloned().collect()
    }

    fn delta(&self, module: &str) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for &(i, j) in self.by_module.get(module).into_iter().flatten() {
            let (file, weight) = &self.loras[i];
            let delta = (file.modules[j].delta()? * *weight)?;
            sum = Some(match sum {
                Some(previous) => (previous + delta)?,
                None => delta,
            });
        }
        sum.ok_or_else(|| anyhow::anyhow!("no LoRA adapts `{module}`"))
    }
}

/// Refuses a LoRA that does not fit `weights`: another family, a module the
/// model lacks or has in another size, or layers Easel cannot fold in.
fn check_fits(weights: &ModelWeights, file: &LoraFile, path: &Path) -> Result<()> {
    let name = path.display();
    if file.family.evidence != ASSUMED && file.family.family != weights.family {
        bail!(
            "{name} is a LoRA for {} (from {}), but {} is {}",
            file.family.family.label(),
            file.family.evidence,
            weights.path.display(),
            weights.family.label()
        );
    }
    if let Some(first) = file.unmatched.first() {
        bail!(
            "{name}: {} of its modules are not layers Easel can fold in (first: {first}); baking the rest would \
             not give the model the LoRA describes",
            file.unmatched.len()
        );
    }
    for module in &file.modules {
        let layer = weights.layer(&module.path).map_err(|_| {
            anyhow::anyhow!(
                "{name}: `{}` is not a layer of {} (a LoRA for another model?)",
                module.path,
                weights.path.display()
            )
        })?;
        let (rows, columns) = (module.up.dims()[0], module.down.dims()[1]);
        if (layer.rows.len(), layer.shape[1]) != (rows, columns) {
            bail!(
                "{name}: `{}` is {rows}×{columns}, but the model's layer is {}×{} (a LoRA for another model?)",
                module.path,
                layer.rows.len(),
                layer.shape[1]
            );
        }
    }
    Ok(())
}

/// Bakes `loras` into `base`, writing `out`: a `.safetensors` path gets a
/// single file in the original layout, anything else a diffusers folder
/// (from a diffusers base only).
pub fn bake(base: &Path, loras: &[Weighted], out: &Path) -> Result<BakeReport> {
    let weights = ModelWeights::open(base)?;
    let single_file = out.extension().is_some_and(|e| e == "safetensors");
    let layout = match (weights.layout, single_file) {
        (Layout::Diffusers, true) => OutputLayout::SingleFile,
        (_, true) | (Layout::Diffusers, false) => OutputLayout::Same,
        (Layout::SingleFile, false) => bail!(
            "{}: a single-file model is baked into a single file: give --out a name ending in .safetensors",
            out.display()
        ),
    };
    let mut opened = Vec::with_capacity(loras.len());
    for lora in loras {
        let file = LoraFile::open(&lora.path)?;
        check_fits(&weights, &file, &lora.path)?;
        opened.push((file, lora.weight));
    }
    bake_weights(&weights, &LoraEdits::new(opened), out, &BakeOptions { layout, metadata: Default::default() })
}
