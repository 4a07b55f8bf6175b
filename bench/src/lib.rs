//! Benchmarks of Ferry, run as release binaries by the scripts in `bench/`.
//!
//! - `tunnel-bench`: pushes record batches of a realistic table agent →
//!   broker over loopback QUIC and reports payload and wire throughput,
//!   compression ratio, CPU seconds per GB and peak RSS of both sides.

/// CPU time (user + system) and peak RSS of this process.
pub fn self_usage() -> (f64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss as u64)
}
