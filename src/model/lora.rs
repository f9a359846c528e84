//! LoRA inside the model: layers that take low-rank adapters, and the
//! trainable set of adapters injected into them.
//!
//! An adapted layer computes `W·x + b + Σ scaleᵢ·Bᵢ·(Aᵢ·x)`: the frozen base
//! output plus a separate low-rank path per adapter, so training never
//! rebuilds a merged weight. Adapters are addressed by their diffusers module
//! path (`unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`),
//! which the file formats translate to and from.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_distr::{Distribution, Uniform};

use super::nn::Linear;
use super::{checkpoint, fused};

/// How the base weight is stored: proj_in/proj_out are 1×1 convolutions in
/// SD1 (`[out, in, 1, 1]`), linear layers elsewhere. The layer always acts on
/// the last dimension; this only matters when reading and writing weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAs {
    Linear,
    Conv1x1,
}

/// One low-rank update `scale·B·A`, with A (`down`) `[rank, in]` and B (`up`)
/// `[out, rank]`, kept in its own dtype (f32 when training half-precision models).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub down: Tensor,
    pub up: Tensor,
    pub scale: f64,
    /// Which LoRA it belongs to, so one of several can be unloaded.
    pub source: Arc<str>,
}

impl LoraAdapter {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (down, up) = (checkpoint::trainable(&self.down), checkpoint::trainable(&self.up));
        let x_low = x.to_dtype(down.dtype())?;
        let update = x_low.broadcast_matmul(&down.t()?)?.broadcast_matmul(&up.t()?)?;
        (update * self.scale)?.to_dtype(x.dtype())
    }

    /// The dense update `scale·B·A`, `[out, in]`.
    pub fn delta(&self) -> Result<Tensor> {
        self.up.matmul(&self.down)? * self.scale
    }
}

/// A frozen linear layer (or 1×1 convolution) that adapters can be attached to.
#[derive(Debug, Clone)]
pub struct LoraLinear {
    pub base: Linear,
    pub stored_as: StoredAs,
    pub adapters: Vec<LoraAdapter>,
}

impl LoraLinear {
    pub fn load(vb: VarBuilder, in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        Ok(Self {
            base: Linear::load(vb, in_features, out_features, bias)?,
            stored_as: StoredAs::Linear,
            adapters: vec![],
        })
    }

    /// Loads a `[out, in, 1, 1]` convolution as the linear layer it is.
    pub fn load_conv1x1(vb: VarBuilder, in_features: usize, out_features: usize) -> Result<Self> {
        let weight = vb.get((out_features, in_features, 1, 1), "weight")?.reshape((out_features, in_features))?;
        let base = Linear { weight, bias: Some(vb.get(out_features, "bias")?) };
        Ok(Self { base, stored_as: StoredAs::Conv1x1, adapters: vec![] })
    }

    pub fn in_features(&self) -> usize {
        self.base.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.base.weight.dims()[0]
    }

    /// The adapters' tensors that are being trained.
    pub fn trainable_tensors(&self, out: &mut Vec<Tensor>) {
        for adapter in &self.adapters {
            out.extend([&adapter.down, &adapter.up].into_iter().filter(|t| t.is_variable()).cloned());
        }
    }

    /// Folds every adapter into the base weight and drops them.
    pub fn merge(&mut self) -> Result<()> {
        let dtype = self.base.weight.dtype();
        let mut weight = self.base.weight.to_dtype(DType::F32)?;
        for adapter in self.adapters.drain(..) {
            weight = (weight + adapter.delta()?.to_dtype(DType::F32)?)?;
        }
        self.base.weight = weight.to_dtype(dtype)?;
        Ok(())
    }
}

impl Module for LoraLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let [adapter] = self.adapters.as_slice() {
            let adapter_tensors = (checkpoint::trainable(&adapter.down), checkpoint::trainable(&adapter.up));
            let base = (&self.base.weight, self.base.bias.as_ref());
            if let Some(y) = fused::lora_linear(x, base, (&adapter_tensors.0, &adapter_tensors.1), adapter.scale)? {
                return Ok(y);
            }
        }
        let mut y = self.base.forward(x)?;
        for adapter in &self.adapters {
            y = (y + adapter.forward(x)?)?;
        }
        Ok(y)
    }
}

/// A list of the adaptable layers of a model, by diffusers module path.
pub type LoraLayers<'a> = Vec<(String, &'a mut LoraLinear)>;

/// A model part whose adaptable layers can be listed.
pub trait LoraHost {
    /// Appends every adaptable layer under `prefix` (`prefix.module.path`).
    fn lora_layers<'a>(&'a mut self, prefix: &str, out: &mut LoraLayers<'a>);
}

/// `prefix.name`, or `name` alone at the root.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// Which UNet layers get adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LoraTargets {
    /// The attention projections `to_q`, `to_k`, `to_v`, `to_out.0`.
    Attention,
    /// Every linear and 1×1 convolution inside the transformer blocks
    /// (adds `proj_in`, `proj_out` and the feed-forward), as kohya does by default.
    Transformer,
}

impl std::fmt::Display for LoraTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Attention => "attention",
            Self::Transformer => "transformer",
        })
    }
}

/// Whether a UNet layer gets a trainable adapter under `targets`.
pub fn is_unet_target(path: &str, targets: LoraTargets) -> bool {
    let attention = ["to_q", "to_k", "to_v", "to_out.0"];
    let transformer = ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"];
    let ends_with = |names: &[&str]| names.iter().any(|name| path.ends_with(&format!(".{name}")));
    match targets {
        LoraTargets::Attention => ends_with(&attention),
        LoraTargets::Transformer => ends_with(&attention) || ends_with(&transformer),
    }
}

/// One trainable adapter: its path and variables.
#[derive(Debug, Clone)]
pub struct TrainableModule {
    pub path: String,
    pub down: Var,
    pub up: Var,
    pub stored_as: StoredAs,
}

/// A trainable LoRA: rank, alpha and the variables of every adapted layer.
#[derive(Debug, Clone)]
pub struct LoraNetwork {
    pub rank: usize,
    pub alpha: f64,
    pub modules: Vec<TrainableModule>,
}

impl LoraNetwork {
    /// Creates adapters for `layers` as PEFT does: A uniform in ±1/√in
    /// (Kaiming-uniform with a = √5), B zero, so the model starts unchanged.
    /// Each layer's A comes from its own seeded stream, so adding a layer does
    /// not change the others.
    pub fn create(
        layers: &[(String, &mut LoraLinear)],
        rank: usize,
        alpha: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let modules = layers
            .iter()
            .map(|(path, layer)| {
                let in_features = layer.in_features();
                let bound = 1.0 / (in_features as f32).sqrt();
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ fnv1a(path.as_bytes()));
                let uniform = Uniform::new(-bound, bound).map_err(candle_core::Error::wrap)?;
                let values: Vec<f32> = (0..rank * in_features).map(|_| uniform.sample(&mut rng)).collect();
                let down = Var::from_tensor(&Tensor::from_vec(values, (rank, in_features), device)?)?;
                let up = Var::zeros((layer.out_features(), rank), DType::F32, device)?;
                Ok(TrainableModule { path: path.clone(), down, up, stored_as: layer.stored_as })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { rank, alpha, modules })
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Attaches the adapters to the matching layers, under the label `source`.
    pub fn attach(&self, layers: &mut LoraLayers, source: &str) {
        let source: Arc<str> = source.into();
        for module in &self.modules {
            if let Some((_, layer)) = layers.iter_mut().find(|(path, _)| *path == module.path) {
                layer.adapters.push(LoraAdapter {
                    down: module.down.as_tensor().clone(),
                    up: module.up.as_tensor().clone(),
                    scale: self.scale(),
                    source: source.clone(),
                });
            }
        }
    }

    pub fn vars(&self) -> Vec<Var> {
        self.modules.iter().flat_map(|m| [m.down.clone(), m.up.clone()]).collect()
    }
}

/// Removes the adapters of one LoRA (`Some(label)`) or of all (`None`).
pub fn unload(layers: &mut LoraLayers, source: Option<&str>) {
    for (_, layer) in layers.iter_mut() {
        layer.adapters.retain(|adapter| source.is_some_and(|label| &*adapter.source != label));
    }
}

/// FNV-1a, a stable hash of a layer path for per-layer seeds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
