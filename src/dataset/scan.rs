//! The dataset scan: every image decoded in parallel and measured, then
//! flagged against the project's thresholds and against the dataset itself
//! (blur relative to its median, duplicates among its images). Unchanged
//! files come from a cache in the project's cache folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::analysis::{PixelStats, analyse};
use super::buckets::{self, Bucket};
use super::integrity::incomplete;
use super::inventory::{CaptionState, caption_for};
use crate::model::lora::fnv1a;
use crate::project::{IMAGE_EXTENSIONS, ProjectConfig};

/// What was read from one file; cached by path, size and modification time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Relative to the dataset folder.
    pub path: PathBuf,
    pub bytes: u64,
    pub modified_ns: u128,
    pub width: u32,
    pub height: u32,
    pub format: Option<String>,
    pub content_hash: u64,
    /// Why it could not be decoded (truncated, corrupt, empty, unsupported).
    pub error: Option<String>,
    /// Too many pixels to decode safely; not decoded.
    pub huge: bool,
    pub stats: Option<PixelStats>,
}

/// Something the operator should look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum Flag {
    Unreadable { reason: String },
    Huge { megapixels: f64 },
    TooSmall { short_side: u32, minimum: u32 },
    Blurry { sharpness: f64, dataset_median: f64 },
    Underexposed { mean_luma: f64 },
    Overexposed { mean_luma: f64 },
    Clipped { shadows: f64, highlights: f64 },
    Grayscale { saturation: f64 },
    Alpha,
    ExactDuplicate { of: Vec<PathBuf> },
    NearDuplicate { of: Vec<PathBuf>, distance: u32 },
    ExtremeAspect { ratio: f64 },
    NoCaption,
    EmptyCaption,
}

impl Flag {
    /// The flag's name, as counted in summaries.
    pub fn name(&self) -> &'static str {
        self.labels().0
    }

    /// The flag's short badge in the workbench's list.
    pub fn badge(&self) -> &'static str {
        self.labels().1
    }

    /// (name, badge), in one table so the two never disagree about a flag.
    fn labels(&self) -> (&'static str, &'static str) {
        match self {
            Self::Unreadable { .. } => ("unreadable", "bad"),
            Self::Huge { .. } => ("huge", "huge"),
            Self::TooSmall { .. } => ("too small", "small"),
            Self::Blurry { .. } => ("blurry", "blur"),
            Self::Underexposed { .. } => ("underexposed", "dark"),
            Self::Overexposed { .. } => ("overexposed", "bright"),
            Self::Clipped { .. } => ("clipped", "clip"),
            Self::Grayscale { .. } => ("grayscale", "gray"),
            Self::Alpha => ("alpha channel", "alpha"),
            Self::ExactDuplicate { .. } => ("exact duplicate", "copy"),
            Self::NearDuplicate { .. } => ("near duplicate", "dup"),
            Self::ExtremeAspect { .. } => ("extreme aspect", "aspect"),
            Self::NoCaption => ("no caption", "nocap"),
            Self::EmptyCaption => ("empty caption", "nocap"),
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        // A big group would otherwise fill the screen with names.
        let names = |paths: &[PathBuf]| {
            let mut names: Vec<String> = paths.iter().take(3).map(|p| p.display().to_string()).collect();
            if paths.len() > 3 {
                names.push(format!("{} more", paths.len() - 3));
            }
            names.join(", ")
        };
        match self {
            Self::Unreadable { reason } => format!("unreadable: {reason}"),
            Self::Huge { megapixels } => format!("huge: {megapixels:.0} megapixels, not decoded"),
            Self::TooSmall { short_side, minimum } => format!("too small: short side {short_side} px < {minimum}"),
            Self::Blurry { sharpness, dataset_median } => {
                format!("blurry: sharpness {sharpness:.1} (dataset median {dataset_median:.1})")
            }
            Self::Underexposed { mean_luma } => format!("underexposed: mean luminance {mean_luma:.2}"),
            Self::Overexposed { mean_luma } => format!("overexposed: mean luminance {mean_luma:.2}"),
            Self::Clipped { shadows, highlights } => {
                format!("clipped: {:.0}% black, {:.0}% white", shadows * 100.0, highlights * 100.0)
            }
            Self::Grayscale { saturation } => format!("grayscale or nearly: saturation {saturation:.3}"),
            Self::Alpha => "has transparency (training sees it flattened)".into(),
            Self::ExactDuplicate { of } => format!("exact duplicate of {}", names(of)),
            Self::NearDuplicate { of, distance } => format!("near duplicate of {} (distance {distance})", names(of)),
            Self::ExtremeAspect { ratio } => format!("extreme aspect ratio {ratio:.2}"),
            Self::NoCaption => "no caption".into(),
            Self::EmptyCaption => "empty caption".into(),
        }
    }
}

/// One image's scan result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub record: ImageRecord,
    pub caption: &'static str,
    pub bucket: Option<Bucket>,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    pub findings: Vec<Finding>,
    pub median_sharpness: f64,
    /// Groups of paths (indices into `findings`).
    pub exact_groups: Vec<Vec<usize>>,
    pub near_groups: Vec<Vec<usize>>,
    pub from_cache: usize,
    pub decoded: usize,
}

impl ScanReport {
    /// How many images carry each flag, by name.
    pub fn flag_counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for flag in self.findings.iter().flat_map(|f| &f.flags) {
            match counts.iter_mut().find(|(name, _)| *name == flag.name()) {
                Some((_, n)) => *n += 1,
                None => counts.push((flag.name(), 1)),
            }
        }
        counts
    }

    pub fn bucket_histogram(&self) -> Vec<(Bucket, usize)> {
        let mut histogram: std::collections::BTreeMap<Bucket, usize> = Default::default();
        for bucket in self.findings.iter().filter_map(|f| f.bucket) {
            *histogram.entry(bucket).or_default() += 1;
        }
        histogram.into_iter().collect()
    }
}

const CACHE_FILE: &str = "scan.json";
/// Bump when the measurements change, so old cached records are not reused.
const CACHE_VERSION: u32 = 7;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    records: Vec<ImageRecord>,
}

fn load_cache(cache_dir: &Path) -> HashMap<PathBuf, ImageRecord> {
    let Ok(text) = std::fs::read_to_string(cache_dir.join(CACHE_FILE)) else { return HashMap::new() };
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(file) if file.version == CACHE_VERSION => file.records.into_iter().map(|r| (r.path.clone(), r)).collect(),
        _ => HashMap::new(),
    }
}

/// Image files under `dir`, relative to it, sorted; `_` and `.` folders
/// (rejected images, hidden files) are left out.
pub(crate) fn image_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(items) = std::fs::read_dir(dir) else { return };
        for item in items.filter_map(Result::ok) {
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &path, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// Decodes and measures one file, refusing to decode beyond `max_pixels`.
fn read_record(dataset: &Path, path: &Path, bytes: u64, modified_ns: u128, max_pixels: u64) -> ImageRecord {
    let mut record = ImageRecord {
        path: path.to_path_buf(),
        bytes,
        modified_ns,
        width: 0,
        height: 0,
        format: None,
        content_hash: 0,
        error: None,
        huge: false,
        stats: None,
    };
    let data = match std::fs::read(dataset.join(path)) {
        Ok(data) => data,
        Err(e) => {
            record.error = Some(format!("cannot read: {e}"));
            return record;
        }
    };
    record.content_hash = fnv1a(&data);
    if let Err(error) = measure(&data, max_pixels, &mut record) {
        record.error = Some(error);
    }
    record
}

/// Reads the header, then (within the pixel limit) decodes and measures.
fn measure(data: &[u8], max_pixels: u64, record: &mut ImageRecord) -> Result<(), String> {
    let open = || image::ImageReader::new(std::io::Cursor::new(data)).with_guessed_format().map_err(|e| e.to_string());
    let mut header = open()?;
    // Only the header is read here; the size is judged below, by our own limit.
    header.no_limits();
    record.format = header.format().map(|f| format!("{f:?}").to_uppercase());
    // A header cut short is best explained by where the file ends.
    (record.width, record.height) =
        header.into_dimensions().map_err(|e| incomplete(data).unwrap_or_else(|| format!("unreadable header: {e}")))?;
    if u64::from(record.width) * u64::from(record.height) > max_pixels {
        record.huge = true;
        return Ok(());
    }
    if let Some(reason) = incomplete(data) {
        return Err(reason);
    }
    if record.format.as_deref() == Some("JPEG")
        && let Some(image) = decode_jpeg_scaled(data, super::analysis::MEASUREMENT_SIDE as u16)?
    {
        record.stats = Some(analyse(&image));
        return Ok(());
    }
    let mut reader = open()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(record.width);
    limits.max_image_height = Some(record.height);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    record.stats = Some(analyse(&image));
    Ok(())
}

/// Decodes a JPEG already scaled down in the DCT domain, to the smallest
/// 1/8-steps size that still covers `side`×`side` (the scan's 256 px view, a
/// preview): most of the decoding work of a large photo is skipped.
/// `Ok(None)` for the formats it does not handle (CMYK, 16-bit), which then
/// take the ordinary path; an error for data it cannot decode, which the
/// ordinary path would paper over with grey.
pub fn decode_jpeg_scaled(data: &[u8], side: u16) -> Result<Option<image::DynamicImage>, String> {
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(data));
    let undecodable = |e: jpeg_decoder::Error| format!("cannot decode: {e}");
    decoder.scale(side, side).map_err(undecodable)?;
    // Known from the header: CMYK and 16-bit are left to the ordinary path undecoded.
    let supported = [jpeg_decoder::PixelFormat::RGB24, jpeg_decoder::PixelFormat::L8];
    if !decoder.info().is_some_and(|info| supported.contains(&info.pixel_format)) {
        return Ok(None);
    }
    let pixels = decoder.decode().map_err(undecodable)?;
    let Some(info) = decoder.info() else { return Ok(None) };
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    Ok(match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageLuma8),
        _ => None,
    })
}

fn caption_state(dataset: &Path, path: &Path, extension: &str) -> &'static str {
    match caption_for(&dataset.join(path), extension) {
        CaptionState::Missing => "missing",
        CaptionState::Empty => "empty",
        CaptionState::Text(_) => "present",
        CaptionState::Unreadable(_) => "unreadable",
    }
}

/// Scans `dataset`, reusing `cache_dir/scan.json` for unchanged files and
/// writing it back. `progress` hears (done, total) as images are measured.
/// The thresholds come from `project.scan`, the buckets from `project.train`.
pub fn scan(
    dataset: &Path,
    cache_dir: &Path,
    project: &ProjectConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ScanReport {
    let files = image_files(dataset);
    let cache = load_cache(cache_dir);
    let max_pixels = (project.scan.max_megapixels * 1e6) as u64;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = files.len();
    let results: Vec<(ImageRecord, bool)> = files
        .par_iter()
        .map(|path| {
            let meta = std::fs::metadata(dataset.join(path)).ok();
            let bytes = meta.as_ref().map_or(0, |m| m.len());
            let modified_ns = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let cached = cache.get(path).filter(|r| r.bytes == bytes && r.modified_ns == modified_ns && bytes > 0);
            let result = match cached {
                Some(record) => (record.clone(), true),
                None => (read_record(dataset, path, bytes, modified_ns, max_pixels), false),
            };
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            result
        })
        .collect();
    let from_cache = results.iter().filter(|(_, cached)| *cached).count();
    let records: Vec<ImageRecord> = results.into_iter().map(|(record, _)| record).collect();
    if std::fs::create_dir_all(cache_dir).is_ok() {
        let file = CacheFile { version: CACHE_VERSION, records: records.clone() };
        if let Ok(json) = serde_json::to_vec(&file) {
            // A cache that cannot be written only costs time next scan.
            let _ = crate::fsutil::atomic_write(&cache_dir.join(CACHE_FILE), &json);
        }
    }
    let mut report = judge(dataset, records, project);
    report.from_cache = from_cache;
    report.decoded = total - from_cache;
    report
}

/// Flags every record against the thresholds and the dataset's own figures.
pub fn judge(dataset: &Path, records: Vec<ImageRecord>, project: &ProjectConfig) -> ScanReport {
    let (config, resolution, bucketing) = (&project.scan, project.train.resolution, project.train.bucketing);
    let mut sharpness: Vec<f64> = records.iter().filter_map(|r| r.stats.map(|s| s.sharpness)).collect();
    sharpness.sort_by(f64::total_cmp);
    let median_sharpness = if sharpness.is_empty() { 0.0 } else { sharpness[sharpness.len() / 2] };
    let minimum = config.minimum_side(resolution);
    let list = buckets::buckets(resolution, bucketing);

    let exact_groups = group_by(&records, |a, b| {
        a.error.is_none() && !a.huge && a.content_hash == b.content_hash && b.error.is_none()
    });
    let in_exact: Vec<bool> = (0..records.len()).map(|i| exact_groups.iter().any(|g| g.contains(&i))).collect();
    let hash = |r: &ImageRecord| r.stats.map(|s| s.phash);
    let near_groups = group_by(&records, |a, b| match (hash(a), hash(b)) {
        (Some(x), Some(y)) => {
            a.content_hash != b.content_hash && (x ^ y).count_ones() <= config.near_duplicate_distance
        }
        _ => false,
    });

    let findings = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let mut flags = Vec::new();
            let caption = caption_state(dataset, &record.path, &project.caption_extension);
            if let Some(reason) = &record.error {
                flags.push(Flag::Unreadable { reason: reason.clone() });
            }
            if record.huge {
                flags.push(Flag::Huge { megapixels: f64::from(record.width) * f64::from(record.height) / 1e6 });
            }
            let short = record.width.min(record.height);
            if record.error.is_none() && short < minimum {
                flags.push(Flag::TooSmall { short_side: short, minimum });
            }
            if short > 0 {
                let ratio = f64::from(record.width.max(record.height)) / f64::from(short);
                if ratio > config.max_aspect {
                    flags.push(Flag::ExtremeAspect { ratio });
                }
            }
            if let Some(stats) = record.stats {
                if stats.sharpness < config.blur_floor || stats.sharpness < config.blur_relative * median_sharpness {
                    flags.push(Flag::Blurry { sharpness: stats.sharpness, dataset_median: median_sharpness });
                }
                if stats.mean_luma < config.dark_mean {
                    flags.push(Flag::Underexposed { mean_luma: stats.mean_luma });
                } else if stats.mean_luma > config.bright_mean {
                    flags.push(Flag::Overexposed { mean_luma: stats.mean_luma });
                }
                if stats.shadows_clipped > config.clip_fraction || stats.highlights_clipped > config.clip_fraction {
                    flags.push(Flag::Clipped { shadows: stats.shadows_clipped, highlights: stats.highlights_clipped });
                }
                if stats.saturation < config.low_colour {
                    flags.push(Flag::Grayscale { saturation: stats.saturation });
                }
                if stats.uses_alpha {
                    flags.push(Flag::Alpha);
                }
            }
            let others = |group: &[usize]| {
                group.iter().filter(|&&j| j != index).map(|&j| records[j].path.clone()).collect::<Vec<_>>()
            };
            if let Some(group) = exact_groups.iter().find(|g| g.contains(&index)) {
                flags.push(Flag::ExactDuplicate { of: others(group) });
            }
            if let Some(group) = near_groups.iter().find(|g| g.contains(&index)).filter(|_| !in_exact[index]) {
                let distance = group
                    .iter()
                    .filter(|&&j| j != index)
                    .filter_map(|&j| Some((hash(record)? ^ hash(&records[j])?).count_ones()))
                    .min()
                    .unwrap_or(0);
                flags.push(Flag::NearDuplicate { of: others(group), distance });
            }
            match caption {
                "missing" => flags.push(Flag::NoCaption),
                "empty" => flags.push(Flag::EmptyCaption),
                _ => {}
            }
            let bucket = (record.error.is_none() && !record.huge)
                .then(|| buckets::assign(&list, record.width, record.height))
                .flatten();
            Finding { record: record.clone(), caption, bucket, flags }
        })
        .collect();
    ScanReport { findings, median_sharpness, exact_groups, near_groups, from_cache: 0, decoded: 0 }
}

/// Connected groups (of two or more) under a symmetric relation.
fn group_by(records: &[ImageRecord], related: impl Fn(&ImageRecord, &ImageRecord) -> bool) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..records.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..records.len() {
        for j in i + 1..records.len() {
            if related(&records[i], &records[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..records.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}
