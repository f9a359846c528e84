//! Whether an image file is whole. Decoders forgive a file cut short: the
//! JPEG decoder behind `image` fills the missing blocks with grey and says
//! nothing, so a copy that stopped part-way would be measured, and trained
//! on, as if the fill were the picture. The container formats say where
//! they end, so a file that stops before its own end marker is truncated,
//! whatever a decoder makes of it. PIL refuses such files ("image file is
//! truncated"); Easel refuses them too.

/// Why `data` is not a whole image file, or `None` when its structure is
/// complete. Formats not recognised here are left to the header reader.
pub fn incomplete(data: &[u8]) -> Option<String> {
    let result = if data.is_empty() {
        Err("empty file (0 bytes)".to_string())
    } else if data.starts_with(&[0xFF, 0xD8]) {
        jpeg(data)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(data)
    } else if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
        webp(data)
    } else if data.starts_with(b"BM") {
        bmp(data)
    } else if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        tiff(data)
    } else {
        Ok(())
    };
    result.err()
}

fn truncated(what: &str, at: usize) -> String {
    format!("truncated: the file ends after {at} bytes, {what}")
}

/// Walks the JPEG markers from SOI to EOI, stepping over segments by their
/// lengths and over entropy-coded data to the next real marker.
fn jpeg(data: &[u8]) -> Result<(), String> {
    let mut at = 2;
    loop {
        // Anything between segments that is not a marker is skipped, as
        // libjpeg does ("extraneous bytes before marker").
        while at < data.len() && data[at] != 0xFF {
            at += 1;
        }
        while at < data.len() && data[at] == 0xFF {
            at += 1;
        }
        let Some(&marker) = data.get(at) else {
            return Err(truncated("before its end-of-image marker", data.len()));
        };
        at += 1;
        match marker {
            0xD9 => return Ok(()),
            // Standalone markers: restart intervals, TEM, a repeated SOI.
            0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(length) = data.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return Err(truncated("inside a segment header", data.len()));
        };
        if length < 2 {
            return Err(format!("corrupt: a JPEG segment at byte {} has length {length}", at - 2));
        }
        at += length;
        if at > data.len() {
            return Err(truncated(&format!("inside a segment that needs {at} bytes"), data.len()));
        }
        if marker == 0xDA {
            at = entropy_coded_end(data, at).ok_or_else(|| {
                truncated("inside the compressed image data, before its end-of-image marker", data.len())
            })?;
        }
    }
}

/// Where the entropy-coded data starting at `from` ends: the next 0xFF that
/// is neither a stuffed zero nor a restart marker.
fn entropy_coded_end(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + 1 < data.len() {
        if data[at] == 0xFF && !matches!(data[at + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Walks the PNG chunks (length, type, data, CRC) to IEND.
fn png(data: &[u8]) -> Result<(), String> {
    let mut at = 8;
    loop {
        let Some(header) = data.get(at..at + 8) else {
            return Err(truncated("before its IEND chunk", data.len()));
        };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = at.saturating_add(12).saturating_add(length);
        if end > data.len() {
            let kind = String::from_utf8_lossy(&header[4..8]).into_owned();
            return Err(truncated(&format!("inside the {kind} chunk at byte {at}, which needs {end}"), data.len()));
        }
        if &header[4..8] == b"IEND" {
            return Ok(());
        }
        at = end;
    }
}

/// A WebP file is one RIFF chunk whose header gives its whole length.
fn webp(data: &[u8]) -> Result<(), String> {
    let size = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let end = size.saturating_add(8);
    if end > data.len() { Err(truncated(&format!("but its RIFF header says {end}"), data.len())) } else { Ok(()) }
}

fn u16_le(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_le(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A BMP's pixel rows start at the offset its header gives; uncompressed
/// rows are padded to 4 bytes, compressed data has its size in the header.
fn bmp(data: &[u8]) -> Result<(), String> {
    let header = || truncated("inside its header", data.len());
    let offset = u32_le(data, 10).ok_or_else(header)? as usize;
    let info_size = u32_le(data, 14).ok_or_else(header)?;
    let (width, height, bits, compression, stored) = if info_size == 12 {
        // The old OS/2 header: 16-bit sizes, never compressed.
        let word = |at| u16_le(data, at).map(u64::from).ok_or_else(header);
        (word(18)?, word(20)?, word(24)?, 0, 0)
    } else {
        let signed = |at| u32_le(data, at).map(|v| u64::from((v as i32).unsigned_abs())).ok_or_else(header);
        let bits = u16_le(data, 28).map(u64::from).ok_or_else(header)?;
        (signed(18)?, signed(22)?, bits, u32_le(data, 30).ok_or_else(header)?, u32_le(data, 34).ok_or_else(header)?)
    };
    let pixels = match compression {
        // BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS: whole rows.
        0 | 3 | 6 => width.saturating_mul(bits).div_ceil(32).saturating_mul(4).saturating_mul(height),
        _ => u64::from(stored),
    };
    let end = (offset as u64).saturating_add(pixels);
    if end > data.len() as u64 {
        return Err(truncated(&format!("but its pixels need {end}"), data.len()));
    }
    Ok(())
}

/// Every strip (or tile) the first TIFF directory points at must lie inside
/// the file. BigTIFF is not checked.
fn tiff(data: &[u8]) -> Result<(), String> {
    let little = data[0] == b'I';
    let read = |at: usize, size: usize| -> Option<u64> {
        let bytes = data.get(at..at + size)?;
        Some(bytes.iter().enumerate().fold(0u64, |value, (i, &b)| {
            let shift = 8 * if little { i } else { size - 1 - i };
            value | (u64::from(b) << shift)
        }))
    };
    let header = || truncated("inside its first directory", data.len());
    let directory = read(4, 4).ok_or_else(header)? as usize;
    let entries = read(directory, 2).ok_or_else(header)? as usize;
    // The entries, then where the next directory is.
    if directory + 2 + 12 * entries + 4 > data.len() {
        return Err(header());
    }
    // Each entry: tag, type, count, then the value (or where it is).
    let field = |tag: u64| -> Result<Option<Vec<u64>>, String> {
        for entry in (0..entries).map(|i| directory + 2 + 12 * i) {
            if read(entry, 2).ok_or_else(header)? != tag {
                continue;
            }
            let size = match read(entry + 2, 2).ok_or_else(header)? {
                3 => 2,
                4 => 4,
                16 => 8,
                kind => return Err(format!("corrupt: TIFF tag {tag} has type {kind}")),
            };
            let count = read(entry + 4, 4).ok_or_else(header)? as usize;
            let start = if count * size <= 4 { entry + 8 } else { read(entry + 8, 4).ok_or_else(header)? as usize };
            let values = (0..count).map(|i| read(start + i * size, size)).collect::<Option<Vec<_>>>();
            return values.map(Some).ok_or_else(|| truncated("inside its strip table", data.len()));
        }
        Ok(None)
    };
    let (offsets, counts) = match (field(273)?, field(279)?) {
        (Some(offsets), Some(counts)) => (offsets, counts),
        _ => (field(324)?.unwrap_or_default(), field(325)?.unwrap_or_default()),
    };
    let end = offsets.iter().zip(&counts).map(|(o, c)| o.saturating_add(*c)).max().unwrap_or(0);
    if end > data.len() as u64 {
        return Err(truncated(&format!("but its image data runs to {end}"), data.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::incomplete;

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let image =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(image).write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    #[test]
    fn whole_files_pass_and_any_cut_is_caught() {
        for format in [
            image::ImageFormat::Jpeg,
            image::ImageFormat::Png,
            image::ImageFormat::WebP,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
        ] {
            let whole = encoded(format);
            assert_eq!(incomplete(&whole), None, "{format:?}");
            // Trailing bytes after the end marker do not make a file incomplete.
            let mut padded = whole.clone();
            padded.extend_from_slice(b"trailer");
            assert_eq!(incomplete(&padded), None, "{format:?} with a trailer");
            for cut in [whole.len() / 3, whole.len() / 2, whole.len() - 1] {
                let reason = incomplete(&whole[..cut]).unwrap_or_else(|| panic!("{format:?} cut at {cut} passed"));
                assert!(reason.starts_with("truncated"), "{reason}");
            }
        }
        assert_eq!(incomplete(&[]).as_deref(), Some("empty file (0 bytes)"));
    }

    #[test]
    fn a_jpeg_cut_inside_its_compressed_data_names_it() {
        let whole = encoded(image::ImageFormat::Jpeg);
        let reason = incomplete(&whole[..whole.len() - 40]).unwrap();
        assert!(reason.contains("compressed image data"), "{reason}");
    }
}
