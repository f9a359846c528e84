//! Aspect-ratio buckets: training sizes whose area is at most resolution²,
//! with sides in steps of 64, so images keep their shape instead of being
//! cropped square. Images are only ever scaled down.

/// A training size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Bucket {
    pub width: u32,
    pub height: u32,
}

impl Bucket {
    pub fn aspect(self) -> f64 {
        f64::from(self.width) / f64::from(self.height)
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}", self.width, self.height)
    }
}

pub const STEP: u32 = 64;

/// Every bucket for `resolution`: for each width from the minimum side up,
/// the tallest height that keeps the area within resolution².
pub fn buckets(resolution: u32, bucketing: bool) -> Vec<Bucket> {
    if !bucketing {
        return vec![Bucket { width: resolution, height: resolution }];
    }
    let area = u64::from(resolution) * u64::from(resolution);
    let min_side = STEP.max(resolution / 2 / STEP * STEP);
    let max_side = resolution * 2;
    let mut list = Vec::new();
    let mut width = min_side;
    while width <= max_side {
        let height = ((area / u64::from(width)) as u32 / STEP * STEP).min(max_side);
        if height >= min_side {
            list.push(Bucket { width, height });
        }
        width += STEP;
    }
    list.sort();
    list.dedup();
    list
}

/// The bucket for an image of `width`×`height`: the closest aspect ratio, then
/// shrunk (keeping the aspect) until the image covers it, since images are
/// never upscaled. `None` when the image is smaller than the smallest side.
pub fn assign(list: &[Bucket], width: u32, height: u32) -> Option<Bucket> {
    let aspect = f64::from(width) / f64::from(height);
    let distance = |b: &Bucket| (b.aspect().ln() - aspect.ln()).abs();
    let best = list.iter().copied().min_by(|a, b| distance(a).total_cmp(&distance(b)))?;
    if best.width <= width && best.height <= height {
        return Some(best);
    }
    // Scale the bucket down to fit inside the image, in steps of 64.
    let scale = (f64::from(width) / f64::from(best.width)).min(f64::from(height) / f64::from(best.height));
    let fit = |side: u32| (f64::from(side) * scale) as u32 / STEP * STEP;
    let (w, h) = (fit(best.width), fit(best.height));
    (w >= STEP && h >= STEP).then_some(Bucket { width: w, height: h })
}

/// The crop of an image that, scaled to the bucket, fills it: the largest
/// centred rectangle of the bucket's aspect ratio, as (x, y, width, height).
pub fn centre_crop(bucket: Bucket, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let target = bucket.aspect();
    let (crop_w, crop_h) = if f64::from(width) / f64::from(height) > target {
        ((f64::from(height) * target).round() as u32, height)
    } else {
        (width, (f64::from(width) / target).round() as u32)
    };
    let (crop_w, crop_h) = (crop_w.clamp(1, width), crop_h.clamp(1, height));
    ((width - crop_w) / 2, (height - crop_h) / 2, crop_w, crop_h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_the_area_and_sides_in_steps_of_64() {
        let list = buckets(512, true);
        assert!(list.contains(&Bucket { width: 512, height: 512 }));
        assert!(list.contains(&Bucket { width: 768, height: 320 }));
        for b in &list {
            assert!(b.width * b.height <= 512 * 512, "{b}");
            assert_eq!((b.width % 64, b.height % 64), (0, 0), "{b}");
        }
        assert_eq!(buckets(512, false), vec![Bucket { width: 512, height: 512 }]);
    }

    #[test]
    fn images_go_to_the_nearest_aspect_and_are_never_upscaled() {
        let list = buckets(128, true);
        assert_eq!(assign(&list, 384, 384), Some(Bucket { width: 128, height: 128 }));
        let wide = assign(&list, 800, 400).unwrap();
        assert!(wide.width > wide.height, "{wide}");
        // 96×96 cannot fill 128×128: it trains at 64×64 instead.
        assert_eq!(assign(&list, 96, 96), Some(Bucket { width: 64, height: 64 }));
        assert_eq!(assign(&list, 40, 40), None);
        assert_eq!(centre_crop(Bucket { width: 128, height: 128 }, 800, 400), (200, 0, 400, 400));
    }
}
