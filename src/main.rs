use std::process::ExitCode;

fn main() -> ExitCode {
    fix_thread_count();
    easel::cli::main()
}

/// candle asks how many threads to use before each parallel CPU op, and
/// unless `RAYON_NUM_THREADS` is set it works the answer out again every
/// time from /proc (CPU masks, cpuinfo): 10–25 % of a tiny model's training
/// step on two cores. Working it out once and setting the variable makes
/// every later answer a variable lookup. A value the user set is kept.
fn fix_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let candle_threads = candle_core::utils::get_num_threads();
    let rayon_threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // SAFETY: nothing else runs yet: no thread has been started, so no
    // other code can be reading the environment while it changes.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", candle_threads.to_string()) };
    // The variable is meant for candle (physical cores); rayon's own pool
    // (scans, previews) keeps its default of every logical CPU.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(rayon_threads).build_global();
}
