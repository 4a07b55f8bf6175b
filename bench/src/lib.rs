//! Benchmarks of Ferry, run as release binaries by the scripts in `bench/`.
//!
//! - `tunnel-bench`: pushes record batches of a realistic table agent →
//!   broker over loopback QUIC and reports payload and wire throughput,
//!   compression ratio, CPU seconds per GB and peak RSS of both sides.

/// CPU time (user + system, seconds) and peak RSS (KiB) of this process.
///
/// Peak RSS is `VmHWM` from `/proc/self/status`, not `getrusage`'s
/// `ru_maxrss`: Linux carries `ru_maxrss` across fork + exec, so a child
/// started by a big parent would report the parent's peak.
pub fn self_usage() -> (f64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (secs(ru.ru_utime) + secs(ru.ru_stime), hwm)
}
