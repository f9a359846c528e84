//! The workbench as a test drives it: an App on a project folder, loaded as
//! the workbench's first read of the files loads it.

use std::path::Path;

use easel::dataset::Inventory;
use easel::project::Project;
use easel::train::list_runs;
use easel::tui::jobs::{self, ReadFiles};
use easel::tui::{App, Theme};

pub fn loaded_app(root: &Path, theme: &str) -> App {
    let project = Project::open(root).unwrap();
    // The workbench's first read of the files, showing the newest run.
    let shown = list_runs(&project.runs_dir()).first().map(|run| run.dir.clone());
    let request = ReadFiles {
        project: project.clone(),
        previous: Inventory::default(),
        captions: true,
        drafts_changed: None,
        vocabulary_text: None,
        shown,
        compare: None,
    };
    let files = jobs::read_files(request);
    let mut app = App::new(project, Theme::resolve(theme, Path::new(".")).unwrap());
    app.files_loaded(files);
    app
}

/// A read of the files as the workbench's refresh starts it (the 3 s tick, `r`), applied.
pub fn refresh(app: &mut App) -> Vec<easel::tui::Effect> {
    let files = jobs::read_files(ReadFiles::after(&app.shared, false));
    app.files_loaded(files)
}
