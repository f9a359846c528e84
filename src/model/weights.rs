//! Reading weights from `.safetensors` files for the model code, under the
//! names the module code asks for (diffusers names), whatever the file calls
//! them. Every error names the file and the tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;

/// Extensions of PyTorch pickle files, which can run code when loaded.
const PICKLE_EXTENSIONS: [&str; 4] = ["ckpt", "pt", "pth", "bin"];

/// Refuses pickle checkpoints with a hint on converting them.
pub fn refuse_pickle(path: &Path) -> anyhow::Result<()> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if PICKLE_EXTENSIONS.contains(&extension.as_str()) {
        anyhow::bail!(
            "{}: .{extension} is a PyTorch pickle file, and loading a pickle can run arbitrary code, so Easel \
             reads only .safetensors. Convert it once where you trust it, e.g. in Python: \
             `safetensors.torch.save_file(torch.load(path, weights_only=True)[\"state_dict\"], \"model.safetensors\")`, \
             or use the .safetensors download most model pages offer.",
            path.display()
        );
    }
    Ok(())
}

/// Memory-mapped safetensors files and which file holds each tensor.
pub struct WeightFiles {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    index: HashMap<String, usize>,
}

impl WeightFiles {
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<Arc<Self>> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for path in paths {
            refuse_pickle(path)?;
            // SAFETY: the file is mapped read-only; like every safetensors
            // reader, we rely on nobody truncating a model file while it is in use.
            let mapped = unsafe { MmapedSafetensors::new(path) }
                .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
            for (name, _) in mapped.tensors() {
                index.insert(name, files.len());
            }
            files.push((path.clone(), mapped));
        }
        Ok(Arc::new(Self { files, index }))
    }

    /// Every stored tensor name with its shape.
    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.files
            .iter()
            .flat_map(|(_, mapped)| mapped.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())))
            .collect()
    }

    /// Where the tensors came from, for messages.
    pub fn describe(&self) -> String {
        match self.files.as_slice() {
            [(path, _)] => path.display().to_string(),
            files => format!("{} (and {} more files)", files[0].0.display(), files.len() - 1),
        }
    }

    fn load(&self, key: &str, device: &Device) -> Result<(Tensor, &Path)> {
        let Some(&file) = self.index.get(key) else {
            candle_core::bail!("{}: missing tensor `{key}`", self.describe());
        };
        let (path, mapped) = &self.files[file];
        let tensor = mapped
            .load(key, device)
            .map_err(|e| candle_core::Error::msg(format!("{}: tensor `{key}`: {e}", path.display())))?;
        Ok((tensor, path))
    }
}

/// How a tensor the model asks for is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The whole tensor under another name.
    Renamed(String),
    /// Rows `start..start+len` of a fused tensor (OpenCLIP's `in_proj`).
    Rows { key: String, start: usize, len: usize },
    /// The transpose of a stored matrix (OpenCLIP's `text_projection`).
    Transposed(String),
}

impl Stored {
    /// The stored tensor's name.
    pub fn key(&self) -> &str {
        match self {
            Self::Renamed(key) | Self::Rows { key, .. } | Self::Transposed(key) => key,
        }
    }
}

/// The tensors of one model part: stored names as they are, or translated.
#[derive(Clone)]
pub struct WeightSource {
    files: Arc<WeightFiles>,
    names: Option<Arc<HashMap<String, Stored>>>,
    /// Which stored tensors a translated source reads, for messages (`model.diffusion_model.*`).
    scope: String,
}

impl WeightSource {
    /// Tensors asked for by their stored names.
    pub fn direct(files: Arc<WeightFiles>) -> Self {
        Self { files, names: None, scope: String::new() }
    }

    /// Tensors asked for by model names, found through `names`, which were
    /// made from the stored tensors under `scope`.
    pub fn translated(files: Arc<WeightFiles>, names: HashMap<String, Stored>, scope: &str) -> Self {
        Self { files, names: Some(Arc::new(names)), scope: scope.to_string() }
    }

    pub fn var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn resolve(&self, name: &str) -> Stored {
        match &self.names {
            Some(names) => names.get(name).cloned().unwrap_or_else(|| Stored::Renamed(name.to_string())),
            None => Stored::Renamed(name.to_string()),
        }
    }

    fn fetch(&self, name: &str, device: &Device) -> Result<(Tensor, &Path, Stored)> {
        if let Some(names) = &self.names
            && !names.contains_key(name)
        {
            candle_core::bail!(
                "{}: no tensor under `{}` gives the model's `{name}`: a tensor is missing, or this is another kind of model",
                self.files.describe(),
                self.scope
            );
        }
        let stored = self.resolve(name);
        let (tensor, path) = self.files.load(stored.key(), device).map_err(|e| {
            if stored.key() == name { e } else { candle_core::Error::msg(format!("{e} (the model's `{name}`)")) }
        })?;
        let tensor = match &stored {
            Stored::Renamed(_) => tensor,
            Stored::Rows { start, len, .. } => tensor.narrow(0, *start, *len)?,
            Stored::Transposed(_) => tensor.t()?.contiguous()?,
        };
        Ok((tensor, path, stored))
    }
}

/// Shapes that differ only by trailing 1s hold the same weights: a 1×1
/// convolution `[o, i, 1, 1]` is a linear layer `[o, i]`.
pub(crate) fn same_up_to_unit_dims(a: &[usize], b: &[usize]) -> bool {
    let strip = |s: &[usize]| {
        let mut s = s.to_vec();
        while s.len() > 2 && s.last() == Some(&1) {
            s.pop();
        }
        s
    };
    strip(a) == strip(b)
}

impl SimpleBackend for WeightSource {
    fn get(&self, shape: Shape, name: &str, _: candle_nn::Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let (tensor, path, stored) = self.fetch(name, device)?;
        let tensor = if tensor.dims() == shape.dims() {
            tensor
        } else if same_up_to_unit_dims(tensor.dims(), shape.dims()) {
            tensor.reshape(shape)?
        } else {
            candle_core::bail!(
                "{}: tensor `{}` has shape {:?}, but the model expects {:?} there",
                path.display(),
                stored.key(),
                tensor.dims(),
                shape.dims()
            )
        };
        tensor.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        self.fetch(name, device)?.0.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.files.index.contains_key(self.resolve(name).key())
    }
}
