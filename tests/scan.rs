//! The dataset scan against crafted images, one per flag, its cache, and
//! the demo project's planted flaws.

use std::fs;
use std::io::Cursor;
use std::path::Path;

use easel::dataset::scan::{Flag, ScanReport, scan};
use easel::project::ProjectConfig;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

mod common;

/// Photo-like pictures, different per seed: the benchmark's generator.
fn picture(seed: u32, width: u32, height: u32) -> RgbImage {
    easel::bench::photo_like(seed, width, height)
}

fn save(dir: &Path, name: &str, image: &DynamicImage, format: ImageFormat) {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    fs::write(dir.join(name).with_extension("txt"), "zeltmug, a mug").unwrap();
}

fn run(dir: &Path, cache: &Path) -> ScanReport {
    let mut config = ProjectConfig::default();
    config.train.resolution = 128;
    scan(dir, cache, &config, &|_, _| {})
}

fn flags_of<'a>(report: &'a ScanReport, name: &str) -> Vec<&'a str> {
    let finding = report
        .findings
        .iter()
        .find(|f| f.record.path.to_str() == Some(name))
        .unwrap_or_else(|| panic!("{name} not scanned"));
    finding.flags.iter().map(Flag::name).collect()
}

/// `easel scan PROJECT --json`, as a real process.
fn scan_json(project: &Path) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["scan", project.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn each_flag_from_a_crafted_image() {
    let dataset = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let d = dataset.path();
    for seed in 0..6 {
        save(d, &format!("clean_{seed}.png"), &DynamicImage::ImageRgb8(picture(seed, 320, 320)), ImageFormat::Png);
    }
    let original = DynamicImage::ImageRgb8(picture(19, 400, 300));
    save(d, "original.png", &original, ImageFormat::Png);
    save(d, "blurred.png", &original.blur(6.0), ImageFormat::Png);
    save(d, "resized.jpg", &original.resize_exact(300, 225, image::imageops::FilterType::Triangle), ImageFormat::Jpeg);
    fs::copy(d.join("clean_0.png"), d.join("copy_of_clean_0.png")).unwrap();
    fs::write(d.join("copy_of_clean_0.txt"), "zeltmug").unwrap();
    let full = fs::read(d.join("clean_1.png")).unwrap();
    fs::write(d.join("truncated.png"), &full[..full.len() / 3]).unwrap();
    fs::write(d.join("zero.png"), b"").unwrap();
    let checks =
        RgbImage::from_fn(
            64,
            64,
            |x, y| if (x / 8 + y / 16) % 2 == 0 { Rgb([220, 60, 40]) } else { Rgb([30, 140, 90]) },
        );
    save(d, "small.png", &DynamicImage::ImageRgb8(checks), ImageFormat::Png);
    save(
        d,
        "bright.png",
        &DynamicImage::ImageRgb8(RgbImage::from_fn(256, 256, |x, _| {
            Rgb([255, 255, if x % 9 == 0 { 230 } else { 255 }])
        })),
        ImageFormat::Png,
    );
    save(d, "gray.png", &DynamicImage::ImageRgb8(picture(14, 256, 256)).grayscale().to_rgb8().into(), ImageFormat::Png);
    let base = picture(15, 256, 256);
    let transparent_edge = RgbaImage::from_fn(256, 256, |x, y| {
        let p = base.get_pixel(x, y).0;
        Rgba([p[0], p[1], p[2], if x < 20 { 0 } else { 255 }])
    });
    save(d, "alpha.png", &DynamicImage::ImageRgba8(transparent_edge), ImageFormat::Png);
    save(d, "panorama.png", &DynamicImage::ImageRgb8(picture(16, 1024, 256)), ImageFormat::Png);
    let mut nocaption = Vec::new();
    DynamicImage::ImageRgb8(picture(17, 256, 256))
        .write_to(&mut Cursor::new(&mut nocaption), ImageFormat::Png)
        .unwrap();
    fs::write(d.join("nocaption.png"), nocaption).unwrap();
    save(d, "emptycaption.png", &DynamicImage::ImageRgb8(picture(18, 256, 256)), ImageFormat::Png);
    fs::write(d.join("emptycaption.txt"), "  \n").unwrap();
    // A BMP header claiming 60000×60000 pixels (BMP has no checksum to fix): never decoded.
    let mut bomb = Vec::new();
    DynamicImage::ImageRgb8(picture(23, 8, 8)).write_to(&mut Cursor::new(&mut bomb), ImageFormat::Bmp).unwrap();
    bomb[18..22].copy_from_slice(&60_000i32.to_le_bytes());
    bomb[22..26].copy_from_slice(&60_000i32.to_le_bytes());
    fs::write(d.join("bomb.bmp"), bomb).unwrap();
    fs::write(d.join("bomb.txt"), "zeltmug").unwrap();

    let report = run(d, cache.path());
    for seed in 1..6 {
        assert!(
            flags_of(&report, &format!("clean_{seed}.png")).is_empty(),
            "clean_{seed}: {:?}",
            report
                .findings
                .iter()
                .filter(|f| f.record.path.to_str() == Some(&format!("clean_{seed}.png")))
                .flat_map(|f| f.flags.iter().map(|g| g.describe()))
                .collect::<Vec<_>>()
        );
    }
    assert!(flags_of(&report, "blurred.png").contains(&"blurry"), "a blurred copy is blurry (and a near duplicate)");
    assert!(flags_of(&report, "resized.jpg").contains(&"near duplicate"));
    assert!(flags_of(&report, "original.png").contains(&"near duplicate"));
    assert_eq!(flags_of(&report, "copy_of_clean_0.png"), ["exact duplicate"]);
    assert_eq!(flags_of(&report, "clean_0.png"), ["exact duplicate"]);
    assert_eq!(flags_of(&report, "truncated.png")[0], "unreadable");
    assert_eq!(flags_of(&report, "zero.png")[0], "unreadable");
    assert!(flags_of(&report, "small.png").contains(&"too small"));
    assert!(flags_of(&report, "bright.png").contains(&"overexposed"));
    assert!(flags_of(&report, "gray.png").contains(&"grayscale"));
    assert!(flags_of(&report, "alpha.png").contains(&"alpha channel"));
    assert!(flags_of(&report, "panorama.png").contains(&"extreme aspect"));
    assert!(flags_of(&report, "nocaption.png").contains(&"no caption"));
    assert!(flags_of(&report, "emptycaption.png").contains(&"empty caption"));
    let bomb: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.record.path.to_str() == Some("bomb.bmp"))
        .flat_map(|f| f.flags.iter().map(|g| g.describe()))
        .collect();
    assert_eq!(flags_of(&report, "bomb.bmp"), ["huge"], "{bomb:?}");
    assert_eq!(report.decoded, report.findings.len());
}

#[test]
fn unchanged_files_come_from_the_cache_and_changed_ones_are_rescanned() {
    let dataset = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    for seed in 0..4 {
        save(
            dataset.path(),
            &format!("{seed}.png"),
            &DynamicImage::ImageRgb8(picture(seed, 200, 200)),
            ImageFormat::Png,
        );
    }
    let first = run(dataset.path(), cache.path());
    assert_eq!((first.decoded, first.from_cache), (4, 0));
    let second = run(dataset.path(), cache.path());
    assert_eq!((second.decoded, second.from_cache), (0, 4));
    assert_eq!(first.findings, second.findings);
    // A changed image (new size and time) is decoded again and judged anew.
    std::thread::sleep(std::time::Duration::from_millis(20));
    save(dataset.path(), "2.png", &DynamicImage::ImageRgb8(picture(2, 200, 200)).blur(8.0), ImageFormat::Png);
    let third = run(dataset.path(), cache.path());
    assert_eq!((third.decoded, third.from_cache), (1, 3));
    assert!(flags_of(&third, "2.png").contains(&"blurry"));
}

#[test]
fn the_demo_scan_reports_exactly_the_planted_flaws() {
    let project = common::demo_copy();
    let report = scan_json(project.path());
    let mut flagged: Vec<(String, Vec<String>)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["flags"].as_array().unwrap().is_empty())
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["flags"].as_array().unwrap().iter().map(|g| g["flag"].as_str().unwrap().to_string()).collect(),
            )
        })
        .collect();
    flagged.sort();
    let expected = [
        ("zeltmug_03.png", vec!["near_duplicate"]),
        ("zeltmug_07.png", vec!["blurry"]),
        ("zeltmug_18.png", vec!["near_duplicate"]),
        ("zeltmug_19.png", vec!["too_small"]),
    ];
    let expected: Vec<(String, Vec<String>)> =
        expected.iter().map(|(p, f)| (p.to_string(), f.iter().map(|s| s.to_string()).collect())).collect();
    assert_eq!(flagged, expected);
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["scan", project.path().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("20 images") && text.contains("4 flagged") && text.contains("20 unchanged from the cache"),
        "{text}"
    );
}

#[test]
fn a_duplicate_group_is_rejected_but_for_its_sharpest_and_comes_back() {
    let project = common::demo_copy();
    let dataset = project.path().join("dataset");
    let cache = project.path().join("cache");
    let report = run(&dataset, &cache);
    assert_eq!(report.near_groups.len(), 1);
    use easel::dataset::decisions::{self, Decision};
    let members = decisions::sharpest_first(&report, &report.near_groups[0]);
    let paths: Vec<_> = members[1..].iter().map(|&i| report.findings[i].record.path.clone()).collect();
    decisions::apply(&dataset, &Decision::Reject(paths.clone()), "txt").unwrap();
    let rejected: Vec<_> = paths.iter().map(|p| std::path::Path::new(decisions::REJECTED).join(p)).collect();
    assert_eq!(rejected.len(), 1);
    assert!(dataset.join(&rejected[0]).is_file() && dataset.join(&rejected[0]).with_extension("txt").is_file());
    let after = run(&dataset, &cache);
    assert_eq!(after.findings.len(), 19, "rejected images are not scanned");
    assert!(after.near_groups.is_empty());
    easel::dataset::decisions::restore(&dataset, &rejected[0], "txt").unwrap();
    assert_eq!(run(&dataset, &cache).findings.len(), 20);
}

#[test]
fn files_cut_short_are_unreadable_in_the_scan_and_skipped_by_training() {
    let project = common::demo_copy();
    let dataset = project.path().join("dataset");
    let photo = DynamicImage::ImageRgb8(picture(31, 320, 240));
    let mut cut = Vec::new();
    for (format, extension) in [
        (ImageFormat::Jpeg, "jpg"),
        (ImageFormat::Png, "png"),
        (ImageFormat::WebP, "webp"),
        (ImageFormat::Bmp, "bmp"),
        (ImageFormat::Tiff, "tif"),
    ] {
        let mut whole = Vec::new();
        photo.write_to(&mut Cursor::new(&mut whole), format).unwrap();
        let name = format!("cut_{extension}.{extension}");
        // The first third: a copy that stopped, a download that broke. The header is whole.
        fs::write(dataset.join(&name), &whole[..whole.len() / 3]).unwrap();
        fs::write(dataset.join(&name).with_extension("txt"), "zeltmug, a teal mug on a table").unwrap();
        cut.push(name);
    }
    fs::write(dataset.join("zero.png"), b"").unwrap();
    fs::write(dataset.join("zero.txt"), "zeltmug, a teal mug on a table").unwrap();
    cut.push("zero.png".into());

    let report = scan_json(project.path());
    for name in &cut {
        let finding = report["findings"].as_array().unwrap().iter().find(|f| f["path"] == name.as_str()).unwrap();
        let flags = finding["flags"].as_array().unwrap();
        assert_eq!(flags[0]["flag"], "unreadable", "{name}: {flags:?}");
        let reason = flags[0]["reason"].as_str().unwrap();
        eprintln!("{name}: {reason}");
        let expected = if name.starts_with("cut_") { "truncated" } else { "empty file" };
        assert!(reason.starts_with(expected), "{name}: {reason}");
        assert!(finding["bucket"].is_null(), "{name} was given a bucket");
    }

    let train = easel::project::TrainConfig { resolution: 128, ..Default::default() };
    let config = easel::project::ProjectConfig { train, ..Default::default() };
    let set = easel::train::data::TrainingSet::read(&dataset, &config).unwrap();
    for name in &cut {
        let (_, why) = set
            .skipped
            .iter()
            .find(|(path, _)| path.ends_with(name))
            .unwrap_or_else(|| panic!("training did not skip {name}: {:?}", set.skipped));
        eprintln!("training skips {name}: {why}");
        if name.starts_with("cut_") {
            assert!(why.starts_with("unreadable: truncated"), "{name}: {why}");
        }
    }
    assert!(set.train.iter().chain(&set.validation).all(|e| !cut.iter().any(|name| e.image.ends_with(name))));
}
