//! Image previews, decoded off the UI thread. Drawing asks for an image and
//! shows "loading" until the event loop has decoded it in the background
//! (JPEGs scaled down while decoding, other formats bounded and shrunk), so
//! moving through a folder of large photos never stalls a frame.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::DynamicImage;
use ratatui_image::protocol::Protocol;

/// Previews are decoded no larger than this (long side); a terminal pane
/// never shows more.
pub const PREVIEW_SIDE: u32 = 1024;
/// Images with more pixels are not previewed (decompression bombs).
const MAX_PIXELS: u64 = 100_000_000;
/// Decoded previews and encoded protocols kept at most; browsing a large
/// dataset would otherwise keep them all.
const KEEP: usize = 64;

#[derive(Debug, Clone)]
enum State {
    Loading,
    Ready(Arc<DynamicImage>),
    Failed(String),
}

/// What drawing gets for a path.
pub enum Shown<'a> {
    Loading,
    Failed(String),
    /// The protocol for this area size (encoded once per size).
    Ready(std::cell::RefMut<'a, Option<Protocol>>),
}

#[derive(Default)]
pub struct Previews {
    images: RefCell<HashMap<PathBuf, State>>,
    wanted: RefCell<Vec<PathBuf>>,
    protocols: RefCell<HashMap<(PathBuf, u16, u16), Option<Protocol>>>,
}

impl Previews {
    /// The image at `path` for an area of `width`×`height` cells; asks for
    /// it to be decoded when it is not yet.
    pub fn show(&self, path: &Path, width: u16, height: u16, picker: &ratatui_image::picker::Picker) -> Shown<'_> {
        let state = self.images.borrow().get(path).cloned();
        let image = match state {
            None => {
                self.wanted.borrow_mut().push(path.to_path_buf());
                self.images.borrow_mut().insert(path.to_path_buf(), State::Loading);
                return Shown::Loading;
            }
            Some(State::Loading) => return Shown::Loading,
            Some(State::Failed(why)) => return Shown::Failed(why),
            Some(State::Ready(image)) => image,
        };
        let key = (path.to_path_buf(), width, height);
        let mut protocols = self.protocols.borrow_mut();
        if protocols.len() > KEEP && !protocols.contains_key(&key) {
            protocols.clear();
        }
        protocols.entry(key.clone()).or_insert_with(|| {
            let resize = ratatui_image::Resize::Scale(Some(image::imageops::FilterType::Triangle));
            picker.new_protocol((*image).clone(), ratatui::layout::Size::new(width, height), resize).ok()
        });
        Shown::Ready(std::cell::RefMut::map(protocols, |p| p.get_mut(&key).expect("inserted above")))
    }

    /// The paths drawing asked for since the last call.
    pub fn take_wanted(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.wanted.borrow_mut())
    }

    /// A background decode finished.
    pub fn loaded(&self, path: PathBuf, result: Result<DynamicImage, String>) {
        let mut images = self.images.borrow_mut();
        if images.len() > KEEP {
            // Keep what is on the way; the others are decoded again if shown again.
            images.retain(|_, state| matches!(state, State::Loading));
        }
        let state = match result {
            Ok(image) => State::Ready(Arc::new(image)),
            Err(why) => State::Failed(why),
        };
        images.insert(path, state);
    }

    /// Forgets one image (changed on disk, or not decoded now): drawing asks again.
    pub fn forget(&self, path: &Path) {
        self.images.borrow_mut().remove(path);
        self.protocols.borrow_mut().retain(|(p, _, _), _| p != path);
    }

    /// Decodes what was asked for, here and now (tests draw without the loop).
    pub fn load_wanted_now(&self) {
        for path in self.take_wanted() {
            let result = decode(&path);
            self.loaded(path, result);
        }
    }
}

/// Reads an image for previewing: at most `PREVIEW_SIDE` on its long side.
/// The header is read first, so an image of too many pixels is refused
/// before anything is allocated for it, whatever its format.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let open = || image::ImageReader::new(std::io::Cursor::new(&data)).with_guessed_format().map_err(|e| e.to_string());
    let mut header = open()?;
    header.no_limits();
    let format = header.format();
    let (width, height) = header.into_dimensions().map_err(|e| format!("unreadable: {e}"))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!("{width}×{height}: too large to preview safely"));
    }
    let image = match format {
        // A damaged file is still shown as well as it decodes: the scan flags it.
        Some(image::ImageFormat::Jpeg) => {
            crate::dataset::scan::decode_jpeg_scaled(&data, PREVIEW_SIDE as u16).ok().flatten()
        }
        _ => None,
    };
    let image = match image {
        Some(image) => image,
        // image's default limits (512 MiB) stay on: a 16-bit giant is refused, not allocated.
        None => open()?.decode().map_err(|e| format!("cannot decode: {e}"))?,
    };
    Ok(if image.width().max(image.height()) > PREVIEW_SIDE {
        image.thumbnail(PREVIEW_SIDE, PREVIEW_SIDE)
    } else {
        image
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_asked_for_then_drawn_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.jpg");
        crate::bench::photo_like(1, 2048, 1536).save(&big).unwrap();
        let image = decode(&big).unwrap();
        assert_eq!((image.width(), image.height()), (1024, 768));
        let previews = Previews::default();
        let picker = ratatui_image::picker::Picker::halfblocks();
        assert!(matches!(previews.show(&big, 10, 5, &picker), Shown::Loading));
        assert_eq!(previews.take_wanted(), std::slice::from_ref(&big));
        assert!(previews.take_wanted().is_empty(), "asked for once");
        previews.loaded(big.clone(), Ok(image));
        assert!(matches!(previews.show(&big, 10, 5, &picker), Shown::Ready(_)));
        let missing = dir.path().join("missing.png");
        previews.show(&missing, 10, 5, &picker);
        previews.load_wanted_now();
        assert!(matches!(previews.show(&missing, 10, 5, &picker), Shown::Failed(_)));
    }
}
