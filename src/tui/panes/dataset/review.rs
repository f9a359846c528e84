//! The Dataset pane's review: the latest scan, the operator's decisions, and
//! which images the list shows in what order. No I/O: scans and decisions
//! are jobs.

use std::path::{Path, PathBuf};

use crate::dataset::decisions::{Decision, sharpest_first};
use crate::dataset::scan::{Finding, ScanReport};
use crate::tui::jobs::ScanResult;

/// Which images the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Flagged and not kept: what is left to review.
    ToReview,
    /// Images carrying this flag (by `Flag::name`).
    Flag(&'static str),
    Rejected,
}

impl Filter {
    pub fn label(self) -> String {
        match self {
            Self::All => "all".into(),
            Self::ToReview => "to review".into(),
            Self::Flag(name) => name.into(),
            Self::Rejected => "rejected".into(),
        }
    }
}

/// The list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    /// Blurriest first.
    Sharpness,
    /// Smallest short side first.
    Size,
    /// Duplicate groups together, groups first.
    Group,
}

impl Sort {
    const ALL: [Sort; 4] = [Sort::Name, Sort::Sharpness, Sort::Size, Sort::Group];

    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Sharpness => "sharpness",
            Self::Size => "size",
            Self::Group => "duplicate group",
        }
    }
}

/// One row of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewRow {
    /// An index into the report's findings.
    Image(usize),
    /// An index into the rejected images.
    Rejected(usize),
}

/// A duplicate group an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    pub exact: bool,
    /// Indices into the findings, sharpest first.
    pub members: &'a [usize],
    /// A number for the list, 1-based, exact groups first.
    pub number: usize,
}

#[derive(Debug, Clone)]
pub struct DatasetReview {
    pub scan: Option<ScanResult>,
    /// (done, total) while a scan runs.
    pub progress: Option<(usize, usize)>,
    pub filter: Filter,
    pub sort: Sort,
    /// The selected image alone, as large as the pane allows.
    pub full: bool,
    /// Groups with members ordered sharpest first (exact groups, then near).
    groups: Vec<(bool, Vec<usize>)>,
}

impl Default for DatasetReview {
    fn default() -> Self {
        Self { scan: None, progress: None, filter: Filter::All, sort: Sort::Name, full: false, groups: Vec::new() }
    }
}

fn sharpness(finding: &Finding) -> f64 {
    finding.record.stats.map_or(f64::MIN, |s| s.sharpness)
}

impl DatasetReview {
    pub fn loaded(&mut self, result: ScanResult) {
        let report = &result.report;
        self.groups = report
            .exact_groups
            .iter()
            .map(|g| (true, sharpest_first(report, g)))
            .chain(report.near_groups.iter().map(|g| (false, sharpest_first(report, g))))
            .collect();
        // A flag filter whose flag no image carries any more shows nothing: widen it.
        if let Filter::Flag(name) = self.filter
            && !report.findings.iter().any(|f| f.flags.iter().any(|flag| flag.name() == name))
        {
            self.filter = Filter::ToReview;
        }
        self.scan = Some(result);
    }

    pub fn report(&self) -> Option<&ScanReport> {
        self.scan.as_ref().map(|s| &s.report)
    }

    pub fn is_kept(&self, finding: &Finding) -> bool {
        self.scan.as_ref().is_some_and(|s| s.kept.contains(&finding.record.path, finding.record.content_hash))
    }

    /// Flagged and not kept.
    pub fn to_review(&self, finding: &Finding) -> bool {
        !finding.flags.is_empty() && !self.is_kept(finding)
    }

    pub fn group_of(&self, index: usize) -> Option<Group<'_>> {
        self.groups
            .iter()
            .enumerate()
            .find(|(_, (_, members))| members.contains(&index))
            .map(|(i, (exact, members))| Group { exact: *exact, members, number: i + 1 })
    }

    /// The rows the list shows, filtered and sorted.
    pub fn rows(&self) -> Vec<ReviewRow> {
        let Some(scan) = &self.scan else { return Vec::new() };
        if self.filter == Filter::Rejected {
            return (0..scan.rejected.len()).map(ReviewRow::Rejected).collect();
        }
        let findings = &scan.report.findings;
        let mut indices: Vec<usize> = (0..findings.len())
            .filter(|&i| match self.filter {
                Filter::All => true,
                Filter::ToReview => self.to_review(&findings[i]),
                Filter::Flag(name) => findings[i].flags.iter().any(|f| f.name() == name),
                Filter::Rejected => false,
            })
            .collect();
        match self.sort {
            Sort::Name => {}
            Sort::Sharpness => indices.sort_by(|&a, &b| sharpness(&findings[a]).total_cmp(&sharpness(&findings[b]))),
            Sort::Size => indices.sort_by_key(|&i| findings[i].record.width.min(findings[i].record.height)),
            Sort::Group => indices.sort_by_key(|&i| {
                let group = self.group_of(i);
                // Sharpest first inside a group; images in no group last, by name.
                let place = group.map_or(0, |g| g.members.iter().position(|&m| m == i).unwrap_or(0));
                (group.map_or(usize::MAX, |g| g.number), place, i)
            }),
        }
        indices.into_iter().map(ReviewRow::Image).collect()
    }

    /// The filters worth cycling through: all, to review, each flag present, rejected.
    fn filters(&self) -> Vec<Filter> {
        let mut filters = vec![Filter::All, Filter::ToReview];
        if let Some(report) = self.report() {
            filters.extend(report.flag_counts().into_iter().map(|(name, _)| Filter::Flag(name)));
        }
        filters.push(Filter::Rejected);
        filters
    }

    pub fn cycle_filter(&mut self) {
        let filters = self.filters();
        let position = filters.iter().position(|f| *f == self.filter);
        self.filter = filters[position.map_or(0, |p| (p + 1) % filters.len())];
    }

    pub fn cycle_sort(&mut self) {
        let position = Sort::ALL.iter().position(|s| *s == self.sort).unwrap_or(0);
        self.sort = Sort::ALL[(position + 1) % Sort::ALL.len()];
    }

    pub fn finding(&self, row: ReviewRow) -> Option<&Finding> {
        match row {
            ReviewRow::Image(i) => self.report()?.findings.get(i),
            ReviewRow::Rejected(_) => None,
        }
    }

    /// The rejected image's path relative to the dataset (`_rejected/…`).
    pub fn rejected_path(&self, row: ReviewRow) -> Option<PathBuf> {
        match row {
            ReviewRow::Rejected(i) => {
                let scan = self.scan.as_ref()?;
                Some(Path::new(crate::dataset::decisions::REJECTED).join(scan.rejected.get(i)?))
            }
            ReviewRow::Image(_) => None,
        }
    }

    /// The dataset-relative path a row stands for (`_rejected/…` for rejected ones).
    pub fn row_path(&self, row: ReviewRow) -> Option<PathBuf> {
        match row {
            ReviewRow::Image(_) => self.finding(row).map(|f| f.record.path.clone()),
            ReviewRow::Rejected(_) => self.rejected_path(row),
        }
    }

    /// The row after (or before) `from` that is still to review, wrapping.
    pub fn next_to_review(&self, rows: &[ReviewRow], from: usize, forward: bool) -> Option<usize> {
        let count = rows.len();
        (1..=count)
            .map(|offset| if forward { (from + offset) % count } else { (from + count - offset % count) % count })
            .find(|&i| self.finding(rows[i]).is_some_and(|f| self.to_review(f)))
    }

    /// Keeping toggles: a kept image goes back to review.
    pub fn keep_decision(&self, row: ReviewRow) -> Option<Decision> {
        let finding = self.finding(row)?;
        let path = finding.record.path.clone();
        Some(if self.is_kept(finding) {
            Decision::Unkeep { path }
        } else {
            Decision::Keep { path, content_hash: finding.record.content_hash }
        })
    }

    /// Every member of the row's duplicate group but the sharpest.
    pub fn reject_group_decision(&self, row: ReviewRow) -> Option<Decision> {
        let ReviewRow::Image(index) = row else { return None };
        let group = self.group_of(index)?;
        let findings = &self.report()?.findings;
        Some(Decision::Reject(group.members[1..].iter().map(|&i| findings[i].record.path.clone()).collect()))
    }

    pub fn counts(&self) -> Counts {
        let Some(scan) = &self.scan else { return Counts::default() };
        let findings = &scan.report.findings;
        Counts {
            images: findings.len(),
            to_review: findings.iter().filter(|f| self.to_review(f)).count(),
            kept: findings.iter().filter(|f| !f.flags.is_empty() && self.is_kept(f)).count(),
            rejected: scan.rejected.len(),
            buckets: scan.report.bucket_histogram().len(),
        }
    }
}

/// The summary bar's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub images: usize,
    pub to_review: usize,
    pub kept: usize,
    pub rejected: usize,
    pub buckets: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::analysis::PixelStats;
    use crate::dataset::decisions::Kept;
    use crate::dataset::scan::{Flag, ImageRecord};

    fn finding(name: &str, sharp: f64, side: u32, flags: Vec<Flag>) -> Finding {
        let stats = PixelStats {
            sharpness: sharp,
            mean_luma: 0.5,
            shadows_clipped: 0.0,
            highlights_clipped: 0.0,
            saturation: 0.3,
            uses_alpha: false,
            phash: 0,
        };
        Finding {
            record: ImageRecord {
                path: name.into(),
                bytes: 1,
                modified_ns: 0,
                width: side,
                height: side,
                format: None,
                content_hash: sharp as u64,
                error: None,
                huge: false,
                stats: Some(stats),
            },
            caption: "present",
            bucket: None,
            flags,
        }
    }

    fn review() -> DatasetReview {
        let near = |of: &str| Flag::NearDuplicate { of: vec![of.into()], distance: 2 };
        let report = ScanReport {
            findings: vec![
                finding("a.png", 50.0, 512, vec![near("c.png")]),
                finding("b.png", 5.0, 256, vec![Flag::Blurry { sharpness: 5.0, dataset_median: 50.0 }]),
                finding("c.png", 80.0, 1024, vec![near("a.png")]),
                finding("d.png", 60.0, 768, vec![]),
            ],
            near_groups: vec![vec![0, 2]],
            ..ScanReport::default()
        };
        let mut review = DatasetReview::default();
        review.loaded(ScanResult { report, rejected: vec!["old.png".into()], kept: Kept::default() });
        review
    }

    fn images(rows: &[ReviewRow]) -> Vec<usize> {
        rows.iter().map(|r| if let ReviewRow::Image(i) = r { *i } else { usize::MAX }).collect()
    }

    #[test]
    fn filters_and_sorts_choose_the_rows() {
        let mut review = review();
        assert_eq!(images(&review.rows()), [0, 1, 2, 3]);
        review.sort = Sort::Sharpness;
        assert_eq!(images(&review.rows()), [1, 0, 3, 2], "blurriest first");
        review.sort = Sort::Size;
        assert_eq!(images(&review.rows()), [1, 0, 3, 2]);
        review.sort = Sort::Group;
        assert_eq!(images(&review.rows()), [2, 0, 1, 3], "the group, sharpest first, then the rest");
        review.cycle_filter();
        assert_eq!(review.filter, Filter::ToReview);
        assert_eq!(images(&review.rows()), [2, 0, 1]);
        review.cycle_filter();
        review.cycle_filter();
        assert_eq!(review.filter, Filter::Flag("blurry"));
        assert_eq!(images(&review.rows()), [1]);
        review.cycle_filter();
        assert_eq!(review.filter, Filter::Rejected);
        assert_eq!(review.rows(), [ReviewRow::Rejected(0)]);
        assert_eq!(review.rejected_path(ReviewRow::Rejected(0)), Some(PathBuf::from("_rejected/old.png")));
        review.cycle_filter();
        assert_eq!(review.filter, Filter::All);
    }

    #[test]
    fn next_to_review_skips_clean_and_kept_images_and_wraps() {
        let mut review = review();
        let rows = review.rows();
        assert_eq!(review.next_to_review(&rows, 2, true), Some(0), "d is clean; wrap to a");
        assert_eq!(review.next_to_review(&rows, 0, false), Some(2));
        let scan = review.scan.as_mut().unwrap();
        let dir = tempfile::tempdir().unwrap();
        crate::dataset::decisions::apply(dir.path(), &Decision::Keep { path: "b.png".into(), content_hash: 5 }, "txt")
            .unwrap();
        scan.kept = Kept::read(dir.path());
        assert_eq!(review.next_to_review(&rows, 0, true), Some(2), "b is kept");
        assert_eq!(review.counts().to_review, 2);
        assert_eq!(review.counts().kept, 1);
        assert_eq!(review.keep_decision(ReviewRow::Image(1)), Some(Decision::Unkeep { path: "b.png".into() }));
    }

    #[test]
    fn rejecting_a_group_keeps_its_sharpest() {
        let review = review();
        assert_eq!(review.reject_group_decision(ReviewRow::Image(0)), Some(Decision::Reject(vec!["a.png".into()])));
        assert_eq!(review.reject_group_decision(ReviewRow::Image(3)), None, "d is in no group");
    }
}
