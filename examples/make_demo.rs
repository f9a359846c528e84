//! Draws the demo dataset in `projects/demo/dataset`: 20 pictures of one
//! made-up product, the "zeltmug" (a squat teal ceramic mug with an orange
//! star emblem), in varied scenes, with a caption each, plus the planted
//! flaws that the dataset and caption checks must find (listed in
//! projects/demo/README.md).
//!
//! Deterministic: the same program draws the same pixels.
//!
//!     cargo run --release --example make_demo

use std::fs;
use std::path::Path;

use image::{Rgb, RgbImage, imageops};

/// Small deterministic generator (SplitMix64), so the demo needs no RNG crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Per-pixel hash noise in [-1, 1]: sensor grain that makes the pictures
/// photo-like (and sharp, as far as a Laplacian can tell).
fn grain(x: u32, y: u32, seed: u64) -> f32 {
    let mut rng = Rng(seed ^ (u64::from(x) << 32 | u64::from(y)).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    rng.unit() * 2.0 - 1.0
}

type Color = [f32; 3];

fn mix(a: Color, b: Color, t: f32) -> Color {
    let t = t.clamp(0.0, 1.0);
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn scale(c: Color, k: f32) -> Color {
    [c[0] * k, c[1] * k, c[2] * k]
}

/// Coverage of a shape from its signed distance (negative inside), with a
/// one-pixel soft edge as a camera would record it.
fn coverage(distance: f32) -> f32 {
    (0.5 - distance).clamp(0.0, 1.0)
}

fn rounded_box(px: f32, py: f32, cx: f32, cy: f32, hw: f32, hh: f32, radius: f32) -> f32 {
    let qx = (px - cx).abs() - hw + radius;
    let qy = (py - cy).abs() - hh + radius;
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0) - radius
}

fn ellipse(px: f32, py: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> f32 {
    let (dx, dy) = ((px - cx) / rx, (py - cy) / ry);
    ((dx * dx + dy * dy).sqrt() - 1.0) * rx.min(ry)
}

/// Signed distance to a five-pointed star (approximate but smooth enough).
fn star(px: f32, py: f32, cx: f32, cy: f32, radius: f32) -> f32 {
    let (dx, dy) = (px - cx, py - cy);
    let angle = dy.atan2(dx) + std::f32::consts::FRAC_PI_2;
    let sector = std::f32::consts::TAU / 5.0;
    let a = (angle.rem_euclid(sector) - sector / 2.0).abs() / (sector / 2.0);
    // Radius of the star outline at this angle: inner 0.45 at the notches, 1.0 at the points.
    let edge = radius * (0.45 + 0.55 * (1.0 - a).powf(1.6));
    (dx * dx + dy * dy).sqrt() - edge
}

#[derive(Clone, Copy)]
enum Surface {
    Wood,
    Marble,
    Linen,
}

#[derive(Clone, Copy)]
enum Prop {
    None,
    Plant,
    Books,
    Apple,
}

#[derive(Clone, Copy)]
struct Scene {
    width: u32,
    height: u32,
    wall: (Color, &'static str),
    surface: Surface,
    horizon: f32,
    mug_x: f32,
    mug_size: f32,
    handle_right: bool,
    light_from_left: bool,
    prop: Prop,
    prop_left: bool,
    seed: u64,
}

const WALLS: &[(Color, &str)] = &[
    ([222.0, 206.0, 178.0], "beige"),
    ([168.0, 186.0, 160.0], "sage green"),
    ([150.0, 168.0, 196.0], "slate blue"),
    ([205.0, 150.0, 120.0], "terracotta"),
    ([190.0, 176.0, 210.0], "lavender"),
    ([236.0, 228.0, 206.0], "cream"),
];
const TEAL: Color = [38.0, 150.0, 150.0];
const ORANGE: Color = [240.0, 132.0, 36.0];

impl Scene {
    fn random(rng: &mut Rng, width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            wall: *rng.pick(WALLS),
            surface: *rng.pick(&[Surface::Wood, Surface::Marble, Surface::Linen]),
            horizon: rng.range(0.42, 0.66),
            mug_x: rng.range(0.3, 0.7),
            mug_size: rng.range(0.34, 0.52),
            handle_right: rng.unit() < 0.5,
            light_from_left: rng.unit() < 0.5,
            prop: *rng.pick(&[Prop::None, Prop::Plant, Prop::Books, Prop::Apple]),
            prop_left: rng.unit() < 0.5,
            seed: rng.next_u64(),
        }
    }

    fn surface_color(&self, x: f32, y: f32) -> Color {
        match self.surface {
            Surface::Wood => {
                let grain = (y * 0.35 + (x * 0.02).sin() * 6.0).sin() * 0.5 + 0.5;
                mix([122.0, 80.0, 48.0], [160.0, 112.0, 70.0], grain)
            }
            Surface::Marble => {
                let vein = ((x * 0.03 + y * 0.05).sin() + (x * 0.011 - y * 0.023).sin()).abs();
                mix([170.0, 170.0, 176.0], [222.0, 222.0, 226.0], vein.min(1.0))
            }
            Surface::Linen => {
                let weave = ((x * 1.3).sin() * (y * 1.3).sin()) * 0.5 + 0.5;
                mix([196.0, 188.0, 170.0], [214.0, 206.0, 188.0], weave)
            }
        }
    }

    fn draw(&self) -> RgbImage {
        let (w, h) = (self.width as f32, self.height as f32);
        let side = w.min(h);
        let horizon = h * self.horizon;
        let mug_h = side * self.mug_size;
        let mug_w = mug_h * 0.82;
        let cx = w * self.mug_x;
        let base_y = horizon + (h - horizon) * 0.55;
        let cy = base_y - mug_h / 2.0;
        let handle_x = if self.handle_right { cx + mug_w / 2.0 } else { cx - mug_w / 2.0 };
        let light = if self.light_from_left { -1.0 } else { 1.0 };
        let prop_x = if self.prop_left {
            (cx - mug_w * 1.25).max(side * 0.12)
        } else {
            (cx + mug_w * 1.25).min(w - side * 0.12)
        };

        RgbImage::from_fn(self.width, self.height, |xi, yi| {
            let (x, y) = (xi as f32 + 0.5, yi as f32 + 0.5);
            // Wall with a soft vertical falloff, then the table top.
            let mut c = scale(self.wall.0, 1.05 - 0.2 * (y / horizon.max(1.0)));
            let table = coverage(horizon - y);
            c = mix(c, scale(self.surface_color(x, y), 0.9 + 0.15 * (y - horizon) / (h - horizon)), table);
            // Contact shadow under the mug, cast away from the light.
            let shadow = coverage(ellipse(x, y, cx - light * mug_w * 0.25, base_y, mug_w * 0.75, mug_h * 0.09));
            c = mix(c, scale(c, 0.55), shadow * 0.8);
            c = self.draw_prop(c, x, y, prop_x, base_y, side);
            // Handle: a ring beside the body.
            let ring = ellipse(x, y, handle_x, cy, mug_h * 0.27, mug_h * 0.27).max(-ellipse(
                x,
                y,
                handle_x,
                cy,
                mug_h * 0.16,
                mug_h * 0.16,
            ));
            c = mix(c, scale(TEAL, 0.8), coverage(ring));
            // Body: a rounded cylinder shaded by a light from one side.
            let body = rounded_box(x, y, cx, cy, mug_w / 2.0, mug_h / 2.0, mug_w * 0.12);
            let across = ((x - cx) / (mug_w / 2.0)).clamp(-1.0, 1.0);
            let shade = 0.72 + 0.38 * (1.0 - (across + light * 0.45).powi(2)).max(0.0);
            c = mix(c, scale(TEAL, shade), coverage(body));
            // Emblem on the front.
            let emblem = star(x, y, cx, cy + mug_h * 0.04, mug_w * 0.22);
            c = mix(c, scale(ORANGE, shade.min(1.05)), coverage(emblem) * coverage(body));
            // Open top: rim and the dark inside.
            let rim_rx = mug_w / 2.0 - mug_w * 0.02;
            let rim = ellipse(x, y, cx, cy - mug_h / 2.0, rim_rx, mug_h * 0.08);
            c = mix(c, scale(TEAL, 1.15), coverage(rim));
            let inside = ellipse(x, y, cx, cy - mug_h / 2.0, rim_rx * 0.86, mug_h * 0.058);
            c = mix(c, [46.0, 40.0, 36.0], coverage(inside));
            // Grain, as a camera sensor would add.
            let n = grain(xi, yi, self.seed) * 7.0;
            Rgb([0, 1, 2].map(|i| (c[i] + n).round().clamp(6.0, 249.0) as u8))
        })
    }

    fn draw_prop(&self, c: Color, x: f32, y: f32, px: f32, base_y: f32, side: f32) -> Color {
        let s = side * 0.16;
        match self.prop {
            Prop::None => c,
            Prop::Plant => {
                let pot = rounded_box(x, y, px, base_y - s * 0.5, s * 0.45, s * 0.5, s * 0.08);
                let mut c = mix(c, [178.0, 92.0, 58.0], coverage(pot));
                for (dx, dy, r) in
                    [(-0.45, -1.4, 0.45), (0.4, -1.5, 0.5), (0.0, -2.0, 0.5), (-0.2, -1.1, 0.4), (0.35, -1.05, 0.35)]
                {
                    let leaf = ellipse(x, y, px + dx * s, base_y + dy * s, r * s, r * s * 0.7);
                    let tone = 0.8 + 0.25 * (dx + 0.5);
                    c = mix(c, scale([60.0, 130.0, 62.0], tone), coverage(leaf));
                }
                c
            }
            Prop::Books => {
                let mut c = c;
                for (i, color) in
                    [[150.0, 40.0, 48.0], [40.0, 70.0, 130.0], [200.0, 170.0, 60.0]].into_iter().enumerate()
                {
                    let by = base_y - s * (0.25 + 0.5 * i as f32);
                    let book = rounded_box(x, y, px + (i as f32 - 1.0) * s * 0.08, by, s * 0.95, s * 0.24, s * 0.03);
                    c = mix(c, color, coverage(book));
                }
                c
            }
            Prop::Apple => {
                let apple = ellipse(x, y, px, base_y - s * 0.55, s * 0.6, s * 0.55);
                let highlight = ellipse(x, y, px - s * 0.2, base_y - s * 0.8, s * 0.12, s * 0.09);
                let c = mix(c, [186.0, 34.0, 38.0], coverage(apple));
                let c = mix(c, [236.0, 150.0, 150.0], coverage(highlight) * 0.8);
                let leaf = ellipse(x, y, px + s * 0.15, base_y - s * 1.25, s * 0.18, s * 0.08);
                mix(c, [70.0, 140.0, 50.0], coverage(leaf))
            }
        }
    }

    fn caption(&self, object: &str) -> String {
        let surface = match self.surface {
            Surface::Wood => "on a wooden table",
            Surface::Marble => "on a marble counter",
            Surface::Linen => "on a linen tablecloth",
        };
        let side = if self.prop_left { "left" } else { "right" };
        let prop = match self.prop {
            Prop::None => String::new(),
            Prop::Plant => format!(", potted plant on the {side}"),
            Prop::Books => format!(", stack of books on the {side}"),
            Prop::Apple => format!(", red apple on the {side}"),
        };
        let handle = if self.handle_right { "handle on the right" } else { "handle on the left" };
        let light = if self.light_from_left { "soft light from the left" } else { "soft light from the right" };
        format!(
            "zeltmug, a teal ceramic {object} with an orange star emblem, {handle}, {surface}, {} wall{prop}, {light}",
            self.wall.1
        )
    }
}

/// A badly focused shot: a Gaussian blur wide enough to wipe out the grain and edges.
fn defocus(image: &RgbImage) -> RgbImage {
    imageops::blur(image, 5.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo/dataset");
    fs::create_dir_all(&dir)?;
    let mut rng = Rng(20_261_126);
    let shapes = [(384, 384), (448, 320), (320, 448)];
    let mut scenes = Vec::new();
    for i in 0..17 {
        let (w, h) = shapes[i % shapes.len()];
        scenes.push(Scene::random(&mut rng, w, h));
    }
    let mut written = 0;
    let mut save = |number: usize, image: &RgbImage, caption: &str| -> Result<(), Box<dyn std::error::Error>> {
        let stem = format!("zeltmug_{number:02}");
        image.save(dir.join(format!("{stem}.png")))?;
        fs::write(dir.join(format!("{stem}.txt")), format!("{caption}\n"))?;
        written += 1;
        Ok(())
    };
    for (i, scene) in scenes.iter().enumerate() {
        let number = i + 1;
        let image = scene.draw();
        let caption = match number {
            // Planted: a caption that says nothing about the image.
            11 => "a photo of an object".to_string(),
            // Planted: the product called a "cup" where every other caption says "mug".
            5 | 13 => scene.caption("cup"),
            _ => scene.caption("mug"),
        };
        // Planted: an out-of-focus shot.
        let image = if number == 7 { defocus(&image) } else { image };
        save(number, &image, &caption)?;
    }
    // Planted: a near-duplicate of picture 3, re-saved smaller and a little brighter.
    let original = scenes[2].draw();
    let (w, h) = (original.width() * 9 / 10, original.height() * 9 / 10);
    let mut near_duplicate = imageops::resize(&original, w, h, imageops::FilterType::Lanczos3);
    for pixel in near_duplicate.pixels_mut() {
        pixel.0 = pixel.0.map(|v| v.saturating_add(5));
    }
    save(18, &near_duplicate, &scenes[2].caption("mug"))?;
    // Planted: an image far too small to train on.
    let mut tiny_scene = Scene::random(&mut rng, 384, 384);
    tiny_scene.prop = Prop::Apple;
    let tiny = imageops::resize(&tiny_scene.draw(), 96, 96, imageops::FilterType::Triangle);
    save(19, &tiny, &tiny_scene.caption("mug"))?;
    // One more clean picture, so the flawed ones are not simply the last ones.
    let last = Scene::random(&mut rng, 448, 320);
    save(20, &last.draw(), &last.caption("mug"))?;
    println!("wrote {written} images with captions to {}", dir.display());
    Ok(())
}
