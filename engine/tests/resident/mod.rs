//! The process's resident set, for the memory tests (each alone in its test binary, so no
//! other test's allocations move it).

/// Bytes resident now (`/proc/self/statm`, second field, in 4 KiB pages).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm field");
    pages * 4096
}
