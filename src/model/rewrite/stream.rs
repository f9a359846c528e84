//! safetensors files read through a memory map and written one tensor at a
//! time, so rewriting a multi-gigabyte model holds at most one made tensor in
//! memory (plus the mapped source pages, which the kernel can drop at will).
//!
//! The `safetensors` crate's own `serialize_to_file` does stream `View::data()`
//! one tensor at a time, but `data()` cannot fail (a failing edit would have to
//! panic) and the file is never synced to disk, so the header is built with
//! the crate's `Metadata` and the bytes are written here.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};

pub use safetensors::Dtype;

/// A safetensors file mapped read-only, its header parsed; tensors are read
/// in place, so opening even a 7 GB file reads only its header.
pub struct SourceFile {
    pub path: PathBuf,
    mmap: Mmap,
    /// Where the data section starts (after the length and the header).
    data_start: usize,
    header: Metadata,
}

impl SourceFile {
    pub fn open(path: &Path) -> Result<Self> {
        crate::model::weights::refuse_pickle(path)?;
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: mapped read-only; like every safetensors reader, we rely on
        // nobody truncating a model file while it is in use.
        let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        let (header_len, header) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| anyhow!("{}: not a readable safetensors file: {e}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), mmap, data_start: 8 + header_len, header })
    }

    /// The file's `__metadata__` (free-form strings: training info, format).
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.header.metadata().as_ref()
    }

    /// Tensor names in the order their bytes are stored.
    pub fn names(&self) -> Vec<String> {
        self.header.offset_keys()
    }

    pub fn info(&self, key: &str) -> Result<&TensorInfo> {
        self.header.info(key).ok_or_else(|| anyhow!("{}: no tensor `{key}`", self.path.display()))
    }

    /// Every tensor's shape, as the single-file name translation takes them.
    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.header.tensors().into_iter().map(|(name, info)| (name, info.shape.clone())).collect()
    }

    /// A tensor's stored bytes, straight from the map.
    pub fn bytes(&self, key: &str) -> Result<&[u8]> {
        let (start, end) = self.info(key)?.data_offsets;
        Ok(&self.mmap[self.data_start + start..self.data_start + end])
    }

    /// A tensor on the CPU in its stored dtype, for computing with it.
    pub fn tensor(&self, key: &str) -> Result<Tensor> {
        let info = self.info(key)?;
        let dtype = DType::try_from(info.dtype).map_err(|_| {
            anyhow!(
                "{}: tensor `{key}` is stored as {:?}, which Easel cannot compute with",
                self.path.display(),
                info.dtype
            )
        })?;
        Tensor::from_raw_buffer(self.bytes(key)?, dtype, &info.shape, &Device::Cpu)
            .with_context(|| format!("{}: tensor `{key}`", self.path.display()))
    }
}

/// Bytes the writer asked for: borrowed from a map or made for this one
/// tensor. Whatever holds them is dropped as soon as they are written.
pub type Bytes<'a> = Box<dyn AsRef<[u8]> + 'a>;

/// One tensor to write: its header entry now, its bytes when their turn comes.
pub struct PendingTensor<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Box<dyn FnOnce() -> Result<Bytes<'a>> + 'a>,
}

fn byte_len(tensor: &PendingTensor) -> Result<usize> {
    let bits = tensor.shape.iter().try_fold(tensor.dtype.bitsize(), |n, &d| n.checked_mul(d));
    match bits {
        Some(bits) if bits % 8 == 0 => Ok(bits / 8),
        _ => bail!(
            "tensor `{}`: {:?} of shape {:?} is not a whole number of bytes",
            tensor.name,
            tensor.dtype,
            tensor.shape
        ),
    }
}

/// Writes `tensors` (with `metadata` as `__metadata__`) to `path`, asking for
/// each tensor's bytes only once the previous tensor is written and dropped.
/// The file appears complete or not at all (see `fsutil::atomic_write_with`).
pub fn write_safetensors(
    path: &Path,
    metadata: Option<HashMap<String, String>>,
    mut tensors: Vec<PendingTensor>,
) -> Result<()> {
    let in_file = || format!("cannot write {}", path.display());
    let mut seen = HashSet::new();
    if let Some(twice) = tensors.iter().find(|t| !seen.insert(t.name.as_str())) {
        bail!("{}: tensor `{}` given twice", in_file(), twice.name);
    }
    // Widest elements first (stable, so the given order holds within a
    // dtype): every tensor then starts at a multiple of its element size,
    // which readers that view the bytes in place need.
    tensors.sort_by_key(|t| Reverse(t.dtype.bitsize()));
    let mut offset = 0;
    let mut entries = Vec::with_capacity(tensors.len());
    for tensor in &tensors {
        let len = byte_len(tensor).with_context(in_file)?;
        let info =
            TensorInfo { dtype: tensor.dtype, shape: tensor.shape.clone(), data_offsets: (offset, offset + len) };
        entries.push((tensor.name.clone(), info));
        offset += len;
    }
    let header = Metadata::new(metadata, entries).map_err(|e| anyhow!("{}: {e}", in_file()))?;
    let mut header = serde_json::to_vec(&header).with_context(in_file)?;
    header.resize(header.len().next_multiple_of(8), b' ');

    crate::fsutil::atomic_write_with(path, |file| -> Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for tensor in tensors {
            let expected = byte_len(&tensor)?;
            let bytes = (tensor.bytes)().with_context(|| format!("tensor `{}`", tensor.name))?;
            let bytes = (*bytes).as_ref();
            if bytes.len() != expected {
                bail!("tensor `{}`: {} bytes made, {expected} expected", tensor.name, bytes.len());
            }
            out.write_all(bytes)?;
        }
        out.flush()?;
        Ok(())
    })
    .with_context(in_file)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Bytes that count themselves while alive.
    struct Counted(Vec<u8>, Rc<Cell<usize>>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.set(self.1.get() - 1);
        }
    }

    fn pending<'a>(name: &str, dtype: Dtype, shape: &[usize], value: u8, alive: &Rc<Cell<usize>>) -> PendingTensor<'a> {
        let alive = alive.clone();
        let len = shape.iter().product::<usize>() * dtype.bitsize() / 8;
        PendingTensor {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            bytes: Box::new(move || {
                assert_eq!(alive.get(), 0, "a second tensor was asked for while one was still held");
                alive.set(1);
                Ok(Box::new(Counted(vec![value; len], alive)))
            }),
        }
    }

    #[test]
    fn tensors_are_made_one_at_a_time_and_read_back_with_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.safetensors");
        let alive = Rc::new(Cell::new(0));
        let tensors = vec![
            pending("half", Dtype::F16, &[3], 1, &alive),
            pending("wide", Dtype::F32, &[2, 2], 2, &alive),
            pending("ids", Dtype::I64, &[1, 3], 3, &alive),
        ];
        let metadata = HashMap::from([("ss_note".to_string(), "kept".to_string())]);
        write_safetensors(&path, Some(metadata.clone()), tensors).unwrap();
        assert_eq!(alive.get(), 0);

        let file = SourceFile::open(&path).unwrap();
        assert_eq!(file.metadata(), Some(&metadata));
        assert_eq!(file.names(), ["ids", "wide", "half"], "widest first, so each starts aligned");
        assert_eq!(file.bytes("half").unwrap(), [1; 6]);
        assert_eq!(file.bytes("wide").unwrap(), [2; 16]);
        assert_eq!(file.info("ids").unwrap().shape, [1, 3]);
        // Other readers agree.
        let loaded = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded["wide"].dims(), &[2, 2]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"the old model").unwrap();
        let alive = Rc::new(Cell::new(0));
        let failing = PendingTensor {
            name: "broken".into(),
            dtype: Dtype::F32,
            shape: vec![4],
            bytes: Box::new(|| Err(anyhow!("the edit failed"))),
        };
        let error =
            write_safetensors(&path, None, vec![pending("fine", Dtype::F32, &[4], 0, &alive), failing]).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("model.safetensors") && message.contains("broken") && message.contains("the edit failed")
        );
        // Bytes of the wrong length are refused too.
        let short = PendingTensor {
            name: "short".into(),
            dtype: Dtype::F16,
            shape: vec![4],
            bytes: Box::new(|| Ok(Box::new(vec![0u8; 2]))),
        };
        let message = format!("{:#}", write_safetensors(&path, None, vec![short]).unwrap_err());
        assert!(message.contains("short") && message.contains("2 bytes made, 8 expected"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), b"the old model");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["model.safetensors"]);
    }
}
