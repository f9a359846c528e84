//! The scan report in words: counts per flag, the bucket histogram, the
//! size and aspect spread, and the findings image by image.

use super::scan::ScanReport;

fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((values[0], values[values.len() / 2], values[values.len() - 1]))
}

/// The summary `easel scan` prints.
pub fn text(report: &ScanReport, dataset: &str, resolution: u32, seconds: f64) -> String {
    let mut out = String::new();
    let images = report.findings.len();
    let flagged = report.findings.iter().filter(|f| !f.flags.is_empty()).count();
    out.push_str(&format!(
        "Scanned {} in {dataset} in {seconds:.2} s ({} decoded, {} unchanged from the cache); {flagged} flagged.\n",
        crate::words::counted(images, "image"),
        report.decoded,
        report.from_cache
    ));
    let counts = report.flag_counts();
    if counts.is_empty() {
        out.push_str("Flags: none.\n");
    } else {
        let list: Vec<String> = counts.iter().map(|(name, n)| format!("{name} {n}")).collect();
        out.push_str(&format!("Flags: {}.\n", list.join(" · ")));
    }
    let buckets: Vec<String> = report.bucket_histogram().iter().map(|(b, n)| format!("{b}: {n}")).collect();
    out.push_str(&format!(
        "Buckets at {resolution} px: {}.\n",
        if buckets.is_empty() { "none".into() } else { buckets.join(" · ") }
    ));
    let sized: Vec<_> = report.findings.iter().map(|f| &f.record).filter(|r| r.width > 0).collect();
    if let Some((low, median, high)) = spread(sized.iter().map(|r| f64::from(r.width.min(r.height))).collect()) {
        out.push_str(&format!("Short side: {low:.0}–{high:.0} px, median {median:.0}.\n"));
    }
    if let Some((low, median, high)) = spread(sized.iter().map(|r| f64::from(r.width) / f64::from(r.height)).collect())
    {
        out.push_str(&format!("Aspect (width/height): {low:.2}–{high:.2}, median {median:.2}.\n"));
    }
    out.push_str(&format!("Sharpness median {:.1}.\n", report.median_sharpness));
    if flagged > 0 {
        out.push_str("\nFindings:\n");
        for finding in report.findings.iter().filter(|f| !f.flags.is_empty()) {
            for (i, flag) in finding.flags.iter().enumerate() {
                let name = if i == 0 { finding.record.path.display().to_string() } else { String::new() };
                out.push_str(&format!("  {name:<28} {}\n", flag.describe()));
            }
        }
    }
    out
}
