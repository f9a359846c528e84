use std::process::ExitCode;

fn main() -> ExitCode {
    keep_large_allocations();
    fix_thread_count();
    shorten_candle_spin();
    easel::cli::main()
}

/// glibc serves allocations above a moving threshold with mmap and hands
/// them back to the system when freed, so a training step, which allocates
/// and frees tensors of the same sizes every step, faults every page of
/// them in again: a fifth of a tiny batch-4 step. Keeping allocations up to
/// 256 MiB in the heap, and trimming its free top only past 1 GiB, lets each
/// step reuse the last one's memory (measured: tiny batch 4 +20–30 %
/// samples/s, SD1.5-256 −7 % step time, peak RSS +1.5 %).
fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
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

/// After each parallel elementwise op, candle's pool workers spin 25 000
/// times waiting for the next one before sleeping. On a few cores that spin
/// takes the core the matrix products' threads need next: 1 000 measured
/// +7 % (batch 1) and +9 % (batch 4) samples/s on the tiny model, two cores,
/// five interleaved rounds. A value the user set is kept.
fn shorten_candle_spin() {
    const VARIABLE: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VARIABLE).is_none() {
        // SAFETY: as in fix_thread_count, no other thread exists yet.
        unsafe { std::env::set_var(VARIABLE, "1000") };
    }
}
