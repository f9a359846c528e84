//! Where a model's tensors are stored, from the safetensors headers alone:
//! for every tensor the model code reads, named as Easel names it (the
//! diffusers name with the part in front, `unet.conv_in.weight`), the file
//! and stored key, and for single files how the stored tensor holds it
//! (renamed, rows of OpenCLIP's fused attention input, transposed), through
//! the single-file loader's own name maps.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::stream::{Dtype, SourceFile};
use crate::model::Family;
use crate::model::clip::ClipTextConfig;
use crate::model::pipeline::{diffusers_family, part_weights};
use crate::model::single_file;
use crate::model::unet::UNetConfig;
use crate::model::weights::Stored;

/// How a model is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A diffusers folder (`unet/`, `vae/`, `text_encoder/`, …).
    Diffusers,
    /// One original (LDM / SGM) checkpoint file.
    SingleFile,
}

/// The parts Easel reads from a diffusers folder: (folder, weights file stem).
pub(super) const DIFFUSERS_PARTS: [(&str, &str); 4] = [
    ("unet", "diffusion_pytorch_model"),
    ("vae", "diffusion_pytorch_model"),
    ("text_encoder", "model"),
    ("text_encoder_2", "model"),
];

/// Where one model tensor is stored: which of [`ModelWeights::files`], and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: usize,
    pub stored: Stored,
}

/// Where a layer's weight matrix is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerWeight<'a> {
    pub file: &'a Path,
    pub key: &'a str,
    /// The rows holding this layer: all of them unless the tensor is fused
    /// (OpenCLIP's `in_proj_weight` holds q, k and v).
    pub rows: Range<usize>,
    /// The whole stored tensor's shape: `[out, in]`, or `[out, in, 1, 1]`
    /// for a 1×1 convolution (SD1's `proj_in`/`proj_out`).
    pub shape: &'a [usize],
    pub dtype: Dtype,
}

/// A model's weight files, mapped, and where each model tensor is in them.
pub struct ModelWeights {
    pub path: PathBuf,
    pub layout: Layout,
    pub family: Family,
    pub files: Vec<SourceFile>,
    /// Model name (`unet.conv_in.weight`) → location. Stored tensors no part
    /// of the model reads (an SD2 file's last text layer, EMA copies) have none.
    tensors: HashMap<String, Location>,
}

impl ModelWeights {
    /// Opens a diffusers folder or a single `.safetensors` checkpoint, as
    /// `StableDiffusion::load` accepts them, reading only the headers.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::diffusers(path)
        } else if path.is_file() {
            Self::single_file(path)
        } else {
            bail!("{}: no such model file or folder", path.display())
        }
    }

    fn diffusers(folder: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for (part, stem) in DIFFUSERS_PARTS {
            let dir = folder.join(part);
            if part == "text_encoder_2" && !dir.is_dir() {
                continue;
            }
            let paths = part_weights(&dir, stem)?;
            let opened = paths.iter().map(|path| SourceFile::open(path)).collect::<Result<Vec<_>>>()?;
            // transformers 5 saves text encoders without the `text_model.` segment.
            let bare = part.starts_with("text_encoder")
                && !opened.iter().any(|file| file.names().iter().any(|key| key.starts_with("text_model.")));
            for file in opened {
                for key in file.names() {
                    let name =
                        if bare && key != "text_projection.weight" { format!("text_model.{key}") } else { key.clone() };
                    tensors
                        .insert(format!("{part}.{name}"), Location { file: files.len(), stored: Stored::Renamed(key) });
                }
                files.push(file);
            }
        }
        let unet = UNetConfig::from_file(&folder.join("unet/config.json"))?;
        let text = ClipTextConfig::from_file(&folder.join("text_encoder/config.json"))?;
        let encoders = if folder.join("text_encoder_2").is_dir() { 2 } else { 1 };
        let family = diffusers_family(encoders, unet.cross_attention_dim, text.hidden_act);
        Ok(Self { path: folder.to_path_buf(), layout: Layout::Diffusers, family, files, tensors })
    }

    fn single_file(path: &Path) -> Result<Self> {
        let file = SourceFile::open(path)?;
        let shapes = file.shapes();
        let in_file = || path.display().to_string();
        let family = single_file::detect_family(&shapes).with_context(in_file)?;
        let mut parts = vec![
            ("unet", single_file::unet(&shapes, family).with_context(in_file)?.1),
            ("vae", single_file::vae(&shapes, family).with_context(in_file)?.1),
        ];
        let encoders = single_file::text_encoders(&shapes, family).with_context(in_file)?;
        parts.extend(["text_encoder", "text_encoder_2"].into_iter().zip(encoders.into_iter().map(|e| e.names)));
        let tensors = parts
            .into_iter()
            .flat_map(|(part, names)| {
                names.into_iter().map(move |(name, stored)| (format!("{part}.{name}"), Location { file: 0, stored }))
            })
            .collect();
        Ok(Self { path: path.to_path_buf(), layout: Layout::SingleFile, family, files: vec![file], tensors })
    }

    /// Where the model tensor `name` (`unet.conv_in.weight`) is stored.
    pub fn location(&self, name: &str) -> Option<&Location> {
        self.tensors.get(name)
    }

    /// Every model tensor's location.
    pub fn locations(&self) -> &HashMap<String, Location> {
        &self.tensors
    }

    /// Where the weight of the layer at `module` (a path as
    /// `StableDiffusion::lora_layers` names it) is stored: only linear
    /// layers and 1×1 convolutions, the layers a LoRA update is a matrix for.
    pub fn layer(&self, module: &str) -> Result<LayerWeight<'_>> {
        let location = self
            .location(&format!("{module}.weight"))
            .ok_or_else(|| anyhow!("{}: the model has no layer `{module}`", self.path.display()))?;
        let file = &self.files[location.file];
        let key = location.stored.key();
        let info = file.info(key)?;
        let rows = match &location.stored {
            Stored::Renamed(_) => 0..info.shape[0],
            Stored::Rows { start, len, .. } => *start..start + len,
            Stored::Transposed(_) => {
                bail!("{}: `{module}` is stored transposed (`{key}`), not as a layer's weight", file.path.display())
            }
        };
        if !matches!(info.shape.as_slice(), [_, _] | [_, _, 1, 1]) {
            bail!(
                "{}: `{module}` (`{key}`, shape {:?}) is neither a linear layer nor a 1×1 convolution",
                file.path.display(),
                info.shape
            );
        }
        Ok(LayerWeight { file: &file.path, key, rows, shape: &info.shape, dtype: info.dtype })
    }
}
