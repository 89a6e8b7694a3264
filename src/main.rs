//! The `statflow` binary: parses flags and hands over to the runtime.

/// mimalloc rather than the system allocator. The rollup makes and frees
/// many small allocations (keys, measure states) as batches merge and
/// retention retracts rows; over a simulated week with `retain 1d`
/// (benches/durability.rs, part 3) glibc's malloc peaked at 960–980 MiB
/// and still held 830–890 MiB once retention had caught up, mimalloc at
/// 780–850 MiB and 250–390 MiB. (jemalloc did better still, but frees with
/// the size Rust passes, and cardinality-estimator 1.0.3 frees a
/// deserialized sketch's buffer with a smaller size than it was allocated
/// with, which jemalloc does not survive; glibc and mimalloc ignore it.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    statflow_runtime::cli::main()
}
