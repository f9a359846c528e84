//! Rewriting a model's weight files with per-layer edits (for `easel lora
//! bake`): every tensor is streamed from the memory-mapped base, an edited
//! layer's weight becomes W + ΔW (added in f32, stored back in the base's
//! dtype), and every other tensor is copied byte for byte. The output has the
//! base's layout, or, from a diffusers folder, the original single-file
//! layout (LDM for SD1 and SD2, SGM for SDXL).
//!
//! Memory: one written tensor at a time (as f32 while an edit is added), each
//! ΔW asked for only when its tensor is written; unedited tensors go from
//! the map to the file without a copy.

mod layout;
mod original;
mod stream;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};

use layout::DIFFUSERS_PARTS;
pub use layout::{LayerWeight, Layout, Location, ModelWeights};
use original::original_tensors;
pub use stream::{Bytes, Dtype, PendingTensor, SourceFile, write_safetensors};

use crate::model::weights::same_up_to_unit_dims;

/// Updates to layers' weights, each made only when its tensor is written, so
/// that a LoRA over every layer of SDXL never holds all of them at once.
pub trait Edits {
    /// The edited layers, by module path as `StableDiffusion::lora_layers`
    /// names them (`unet.mid_block.attentions.0.proj_in`).
    fn modules(&self) -> Vec<String>;
    /// ΔW for one of them, `[out, in]` (trailing 1s allowed), any float dtype.
    fn delta(&self, module: &str) -> Result<Tensor>;
}

impl Edits for HashMap<String, Tensor> {
    fn modules(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }

    fn delta(&self, module: &str) -> Result<Tensor> {
        self.get(module).cloned().ok_or_else(|| anyhow!("no ΔW for `{module}`"))
    }
}

/// Which layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputLayout {
    /// The base's own: a diffusers folder or a single file.
    #[default]
    Same,
    /// One original-layout `.safetensors` file, whatever the base is.
    SingleFile,
}

#[derive(Debug, Clone, Default)]
pub struct BakeOptions {
    pub layout: OutputLayout,
    /// Entries for each written file's `__metadata__`, over the base file's own.
    pub metadata: HashMap<String, String>,
}

/// One edited layer in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditedTensor {
    pub module: String,
    pub file: PathBuf,
    pub key: String,
    pub rows: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct BakeReport {
    /// The weight files written.
    pub written: Vec<PathBuf>,
    pub edited: Vec<EditedTensor>,
    /// Tensors written unchanged (renamed or reshaped at most).
    pub unchanged: usize,
    /// Files of the base not copied: other weight files of the rewritten
    /// parts (a `.bin` or fp16 twin), which would still hold the old weights.
    pub left_out: Vec<PathBuf>,
}

/// One tensor to write: base tensors stacked along the first dimension,
/// edited, transposed (OpenCLIP's `text_projection`), then reshaped.
struct Planned {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// (index into `ModelWeights::files`, stored key).
    pieces: Vec<(usize, String)>,
    transposed: bool,
    /// (module, its rows in the stacked pieces seen as `[rows, columns]`).
    edits: Vec<(String, Range<usize>)>,
}

struct PlannedFile {
    path: PathBuf,
    metadata: HashMap<String, String>,
    tensors: Vec<Planned>,
}

/// Writes the model of `weights` with `edits` added to its layers' weights to `out`: a new
/// folder (which must not exist yet) for a diffusers folder kept as one, else
/// a `.safetensors` file (replaced atomically if it exists). Layers the base
/// does not have are refused, all named, before anything is written; an
/// error while writing leaves nothing behind.
pub fn bake_weights(
    weights: &ModelWeights,
    edits: &dyn Edits,
    out: &Path,
    options: &BakeOptions,
) -> Result<BakeReport> {
    let base = weights.path.as_path();
    let modules: BTreeSet<String> = edits.modules().into_iter().collect();
    let unknown: Vec<&str> =
        modules.iter().filter(|m| weights.location(&format!("{m}.weight")).is_none()).map(String::as_str).collect();
    if !unknown.is_empty() {
        bail!("{}: the model has no layer {} (nothing written)", base.display(), quoted_list(&unknown));
    }
    for module in &modules {
        weights.layer(module)?;
    }
    let folder = weights.layout == Layout::Diffusers && options.layout == OutputLayout::Same;
    check_output(base, out, folder)?;
    let mut files = if weights.layout == Layout::Diffusers && options.layout == OutputLayout::SingleFile {
        vec![plan_original(weights, &modules, out)?]
    } else {
        plan_same(weights, &modules, out)?
    };
    for file in &mut files {
        file.metadata.extend(options.metadata.clone());
    }
    let mut report = BakeReport::default();
    if folder {
        write_folder(weights, edits, files, out, &mut report)?;
    } else {
        // One file: the base's own, or the original layout's.
        for file in &files {
            write_planned(weights, edits, file, &file.path, &mut report)?;
        }
    }
    Ok(report)
}

fn quoted_list(names: &[&str]) -> String {
    let shown: Vec<String> = names.iter().take(8).map(|name| format!("`{name}`")).collect();
    match names.len() {
        n if n > shown.len() => format!("{} and {} more", shown.join(", "), n - shown.len()),
        _ => shown.join(", "),
    }
}

fn check_output(base: &Path, out: &Path, folder: bool) -> Result<()> {
    if out.exists() && std::fs::canonicalize(out).ok() == std::fs::canonicalize(base).ok() {
        bail!("{}: the output would replace the base model", out.display());
    }
    if folder {
        if out.exists() {
            bail!("{}: already exists (a model folder is written new, never replaced)", out.display());
        }
    } else if out.extension().is_none_or(|extension| extension != "safetensors") || out.is_dir() {
        bail!("{}: a single-file model is written as a `.safetensors` file", out.display());
    }
    Ok(())
}

/// Each base file rewritten under the same name, its tensors in its order.
fn plan_same(weights: &ModelWeights, modules: &BTreeSet<String>, out: &Path) -> Result<Vec<PlannedFile>> {
    let mut files = Vec::new();
    for (index, file) in weights.files.iter().enumerate() {
        let path = match weights.layout {
            Layout::SingleFile => out.to_path_buf(),
            Layout::Diffusers => out.join(file.path.strip_prefix(&weights.path)?),
        };
        let tensors = file
            .names()
            .into_iter()
            .map(|key| {
                let info = file.info(&key)?;
                let (dtype, shape) = (info.dtype, info.shape.clone());
                Ok(Planned {
                    name: key.clone(),
                    dtype,
                    shape,
                    pieces: vec![(index, key)],
                    transposed: false,
                    edits: vec![],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        files.push(PlannedFile { path, metadata: file.metadata().cloned().unwrap_or_default(), tensors });
    }
    for module in modules {
        let layer = weights.layer(module)?;
        let location = weights.location(&format!("{module}.weight")).expect("checked by `layer`");
        let tensor = files[location.file].tensors.iter_mut().find(|t| t.name == layer.key).expect("every key planned");
        tensor.edits.push((module.clone(), layer.rows));
    }
    Ok(files)
}

/// One original-layout file from a diffusers folder.
fn plan_original(weights: &ModelWeights, modules: &BTreeSet<String>, out: &Path) -> Result<PlannedFile> {
    let mut tensors = Vec::new();
    // Model name → (tensor, rows): the first tensor holding it (SD2's extra
    // text layer repeats the last one and is never run).
    let mut places: HashMap<String, (usize, Range<usize>)> = HashMap::new();
    for original in original_tensors(weights)? {
        let mut pieces = Vec::new();
        let mut row = 0;
        for part in &original.parts {
            let location = weights.location(part).expect("planned from the model's names");
            let info = weights.files[location.file].info(location.stored.key())?;
            places.entry(part.clone()).or_insert((tensors.len(), row..row + info.shape[0]));
            row += info.shape[0];
            pieces.push((location.file, location.stored.key().to_string()));
        }
        let dtypes: BTreeSet<Dtype> =
            pieces.iter().map(|(file, key)| Ok(weights.files[*file].info(key)?.dtype)).collect::<Result<_>>()?;
        let [dtype] = dtypes.into_iter().collect::<Vec<_>>()[..] else {
            bail!("{}: the parts of `{}` differ in dtype", weights.path.display(), original.name);
        };
        let (name, shape, transposed) = (original.name, original.shape, original.transposed);
        tensors.push(Planned { name, dtype, shape, pieces, transposed, edits: vec![] });
    }
    for module in modules {
        let (tensor, rows) = places[&format!("{module}.weight")].clone();
        tensors[tensor].edits.push((module.clone(), rows));
    }
    Ok(PlannedFile { path: out.to_path_buf(), metadata: HashMap::new(), tensors })
}

/// A planned tensor's bytes: straight from the map when it is one unchanged
/// piece, else made here.
fn produce<'a>(planned: &'a Planned, files: &'a [SourceFile], edits: &dyn Edits) -> Result<Bytes<'a>> {
    if planned.edits.is_empty() && !planned.transposed {
        return match planned.pieces.as_slice() {
            [(file, key)] => Ok(Box::new(files[*file].bytes(key)?)),
            pieces => {
                let mut joined = Vec::new();
                for (file, key) in pieces {
                    joined.extend_from_slice(files[*file].bytes(key)?);
                }
                Ok(Box::new(joined))
            }
        };
    }
    let pieces = planned.pieces.iter().map(|(file, key)| files[*file].tensor(key)).collect::<Result<Vec<_>>>()?;
    let mut tensor = Tensor::cat(&pieces, 0)?;
    if !planned.edits.is_empty() {
        let rows = tensor.dim(0)?;
        let columns = tensor.elem_count() / rows;
        let mut weight = tensor.to_dtype(DType::F32)?.reshape((rows, columns))?;
        for (module, range) in &planned.edits {
            let delta = edits.delta(module)?;
            if !same_up_to_unit_dims(delta.dims(), &[range.len(), columns]) {
                bail!(
                    "ΔW for `{module}` is {:?}, but the layer's weight is [{}, {columns}]",
                    delta.dims(),
                    range.len()
                );
            }
            let delta = delta.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.reshape((range.len(), columns))?;
            let updated = (weight.narrow(0, range.start, range.len())? + delta)?;
            weight = weight.slice_assign(&[range.clone(), 0..columns], &updated)?;
        }
        tensor = weight.to_dtype(tensor.dtype())?;
    }
    if planned.transposed {
        tensor = tensor.t()?.contiguous()?;
    }
    let tensor = tensor.reshape(planned.shape.as_slice())?;
    Ok(Box::new(safetensors::View::data(&tensor).into_owned()))
}

fn write_planned(
    weights: &ModelWeights,
    edits: &dyn Edits,
    file: &PlannedFile,
    path: &Path,
    report: &mut BakeReport,
) -> Result<()> {
    let pending = file
        .tensors
        .iter()
        .map(|planned| PendingTensor {
            name: planned.name.clone(),
            dtype: planned.dtype,
            shape: planned.shape.clone(),
            bytes: Box::new(move || produce(planned, &weights.files, edits)),
        })
        .collect();
    let metadata = (!file.metadata.is_empty()).then(|| file.metadata.clone());
    write_safetensors(path, metadata, pending)?;
    report.written.push(file.path.clone());
    for planned in &file.tensors {
        report.unchanged += usize::from(planned.edits.is_empty());
        report.edited.extend(planned.edits.iter().map(|(module, rows)| EditedTensor {
            module: module.clone(),
            file: file.path.clone(),
            key: planned.name.clone(),
            rows: rows.clone(),
        }));
    }
    Ok(())
}

/// The folder is made beside `out` under a hidden name and renamed into
/// place when complete, so `out` never holds half a model.
fn write_folder(
    weights: &ModelWeights,
    edits: &dyn Edits,
    files: Vec<PlannedFile>,
    out: &Path,
    report: &mut BakeReport,
) -> Result<()> {
    let name = out.file_name().ok_or_else(|| anyhow!("{}: not a folder name", out.display()))?;
    let partial = out.with_file_name(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    // Left by an earlier process of the same id that was killed.
    let _ = std::fs::remove_dir_all(&partial);
    let result = (|| {
        let rewritten: HashSet<&Path> = weights.files.iter().map(|file| file.path.as_path()).collect();
        copy_others(&weights.path, &partial, &weights.path, &rewritten, report)?;
        for file in &files {
            let relative = file.path.strip_prefix(out)?;
            write_planned(weights, edits, file, &partial.join(relative), report)?;
        }
        std::fs::rename(&partial, out).with_context(|| format!("cannot move the new model into {}", out.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

/// Copies `from` (a folder under the base `root`) into `to`, except the
/// weight files being rewritten, hidden entries (`.git`, `.cache`: not part
/// of the model) and other weight files of the rewritten parts.
fn copy_others(from: &Path, to: &Path, root: &Path, rewritten: &HashSet<&Path>, report: &mut BakeReport) -> Result<()> {
    const WEIGHT_EXTENSIONS: [&str; 7] = ["safetensors", "bin", "ckpt", "pt", "pth", "msgpack", "onnx"];
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let entries = std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("cannot read {}", from.display()))?.path();
        let name = path.file_name().expect("read_dir gives named entries");
        if name.to_string_lossy().starts_with('.') || rewritten.contains(path.as_path()) {
            continue;
        }
        if path.is_dir() {
            copy_others(&path, &to.join(name), root, rewritten, report)?;
            continue;
        }
        let part = path.strip_prefix(root)?.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        let in_rewritten_part = DIFFUSERS_PARTS.iter().any(|(folder, _)| part.as_deref() == Some(*folder));
        let weights_file = path.extension().is_some_and(|e| WEIGHT_EXTENSIONS.iter().any(|w| e == *w));
        if in_rewritten_part && weights_file {
            report.left_out.push(path);
            continue;
        }
        std::fs::copy(&path, to.join(name))
            .with_context(|| format!("cannot copy {} to {}", path.display(), to.display()))?;
    }
    Ok(())
}
