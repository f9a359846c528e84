//! Contact sheets: one PNG per checkpoint × scale, rows the prompts, columns
//! the seeds, labelled in DejaVu Sans Condensed (embedded; assets/fonts/LICENSE).

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansCondensed.ttf");
const TEXT: Rgb<u8> = Rgb([235, 235, 235]);
const MUTED: Rgb<u8> = Rgb([160, 160, 160]);
const GROUND: Rgb<u8> = Rgb([24, 24, 24]);
const GAP: u32 = 4;
const LABEL_WIDTH: u32 = 200;
const TITLE_HEIGHT: u32 = 30;
const HEADER_HEIGHT: u32 = 22;

/// One row: its label and its images (a missing one is left blank).
pub struct SheetRow<'a> {
    pub label: &'a str,
    pub images: Vec<Option<&'a RgbImage>>,
}

/// The sheet: `title` on top, `columns` labelled over the images, each row's label on its left.
pub fn contact_sheet(title: &str, columns: &[String], rows: &[SheetRow], cell: u32) -> RgbImage {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let width = LABEL_WIDTH + columns.len() as u32 * (cell + GAP) + GAP;
    let height = TITLE_HEIGHT + HEADER_HEIGHT + rows.len() as u32 * (cell + GAP) + GAP;
    let mut sheet = RgbImage::from_pixel(width, height, GROUND);
    draw_text(&mut sheet, &font, 18.0, (8, 6), title, TEXT);
    for (i, label) in columns.iter().enumerate() {
        let x = LABEL_WIDTH + i as u32 * (cell + GAP) + GAP;
        draw_text(&mut sheet, &font, 14.0, (x as i32, TITLE_HEIGHT as i32 + 2), label, MUTED);
    }
    for (r, row) in rows.iter().enumerate() {
        let y = TITLE_HEIGHT + HEADER_HEIGHT + r as u32 * (cell + GAP);
        let lines = wrap(&font, 14.0, row.label, LABEL_WIDTH as f32 - 16.0);
        let fitting = (cell / 17).max(1) as usize;
        for (l, line) in lines.iter().take(fitting).enumerate() {
            draw_text(&mut sheet, &font, 14.0, (8, (y + l as u32 * 17) as i32), line, TEXT);
        }
        for (c, image) in row.images.iter().enumerate() {
            let Some(image) = image else { continue };
            let x = LABEL_WIDTH + c as u32 * (cell + GAP) + GAP;
            let fitted = image::imageops::resize(*image, cell, cell, image::imageops::FilterType::Triangle);
            image::imageops::replace(&mut sheet, &fitted, i64::from(x), i64::from(y));
        }
    }
    sheet
}

fn text_width(font: &FontRef, size: f32, text: &str) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut width = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            width += scaled.kern(previous, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width
}

/// Words on lines no wider than `width`; a word wider than a line is cut.
fn wrap(font: &FontRef, size: f32, text: &str, width: f32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if text_width(font, size, &candidate) <= width || line.is_empty() {
            line = candidate;
        } else {
            lines.push(std::mem::replace(&mut line, word.to_string()));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `text` with its top-left at `origin`, blending by glyph coverage.
fn draw_text(image: &mut RgbImage, font: &FontRef, size: f32, origin: (i32, i32), text: &str, colour: Rgb<u8>) {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut x = origin.0 as f32;
    let baseline = origin.1 as f32 + scaled.ascent();
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            x += scaled.kern(previous, id);
        }
        let glyph = id.with_scale_and_position(scaled.scale(), point(x, baseline));
        x += scaled.h_advance(id);
        previous = Some(id);
        let Some(outlined) = font.outline_glyph(glyph) else { continue };
        let bounds = outlined.px_bounds();
        outlined.draw(|gx, gy, coverage| {
            let (px, py) = (bounds.min.x as i32 + gx as i32, bounds.min.y as i32 + gy as i32);
            if px < 0 || py < 0 || px as u32 >= image.width() || py as u32 >= image.height() {
                return;
            }
            let pixel = image.get_pixel_mut(px as u32, py as u32);
            for (channel, target) in pixel.0.iter_mut().zip(colour.0) {
                *channel = (f32::from(*channel) * (1.0 - coverage) + f32::from(target) * coverage).round() as u8;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_drawn_and_rows_wrap() {
        let font = FontRef::try_from_slice(FONT).unwrap();
        let lines = wrap(&font, 14.0, "a watercolor painting of zeltmug on a sunny beach at dawn", 120.0);
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.iter().all(|l| text_width(&font, 14.0, l) <= 120.0 || !l.contains(' ')));
        let image = RgbImage::from_pixel(8, 8, Rgb([200, 0, 0]));
        let rows = [SheetRow { label: "a photo of zeltmug", images: vec![Some(&image), None] }];
        let sheet = contact_sheet("step 200 · scale 0.75", &["seed 1".into(), "seed 2".into()], &rows, 64);
        assert_eq!(sheet.dimensions(), (LABEL_WIDTH + 2 * 68 + GAP, TITLE_HEIGHT + HEADER_HEIGHT + 68 + GAP));
        // The title's ink, the first image, the blank second cell.
        let lit = (0..200).any(|x| (0..TITLE_HEIGHT).any(|y| sheet.get_pixel(x, y)[0] > 150));
        assert!(lit, "the title is drawn");
        let first = (LABEL_WIDTH + GAP + 10, TITLE_HEIGHT + HEADER_HEIGHT + 10);
        assert_eq!(*sheet.get_pixel(first.0, first.1), Rgb([200, 0, 0]));
        assert_eq!(*sheet.get_pixel(first.0 + 68, first.1), GROUND);
    }
}
