//! glibc's allocator, set for training. Burn allocates each layer's output and gradient
//! afresh, hundreds of megabytes a minibatch on `openb`; by default glibc maps the largest
//! of those blocks from the kernel and gives back the top of its heap on every free, so each
//! minibatch faults millions of fresh pages in again (3.9 million in a 2,048-step
//! `berth bench agents --scenario openb` run, against 0.14 million kept). The process keeps
//! what it frees instead, and hands it back once a training task ends
//! ([`return_freed_memory`]), so a long-running service does not hold a finished task's
//! peak. Every thread shares the main arena: the other arenas give back each heap of theirs
//! that falls empty whatever the trim threshold, and one arena is plenty for a service whose
//! allocations are mostly its training thread's. Elsewhere than glibc both calls do nothing.

/// Blocks up to this size come from the heap, not from a mapping of their own: glibc's
/// largest (half its 64 MiB heap on 64-bit systems).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Keeps freed memory for reuse instead of returning it to the kernel at once. Call it
/// before the first thread starts (a thread keeps the arena it first allocated from).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; it takes the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Returns the memory the allocator holds free to the kernel (after a training task).
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free pages; it takes each arena's lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident memory of this process, MiB.
    fn resident_mib() -> f64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096.0 / (1 << 20) as f64
    }

    /// Set in the child process the test runs its body in.
    const CHILD: &str = "BERTH_ALLOCATOR_TEST_CHILD";

    /// The body runs in a child process started with one arena, as `berth` runs after
    /// [`keep_freed_memory`] (the test harness's threads have arenas of their own already).
    #[test]
    fn freed_memory_is_kept_until_it_is_returned() {
        if std::env::var_os(CHILD).is_some() {
            return kept_then_returned();
        }
        let name = "infra::allocator::tests::freed_memory_is_kept_until_it_is_returned";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("MALLOC_ARENA_MAX", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "the child failed:\n{text}");
    }

    fn kept_then_returned() {
        keep_freed_memory();
        let before = resident_mib();
        // 256 MiB in blocks below the mapping threshold, each written so its pages are resident.
        let blocks: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8 + 1; 8 << 20]).collect();
        assert!(blocks.iter().all(|b| b[b.len() - 1] != 0));
        let held = resident_mib();
        drop(blocks);
        let kept = resident_mib();
        return_freed_memory();
        let returned = resident_mib();
        assert!(held - before > 200.0, "the blocks were not resident: {before} -> {held} MiB");
        assert!(held - kept < 56.0, "freed memory went back at once: {held} -> {kept} MiB");
        assert!(kept - returned > 200.0, "freed memory was not returned: {kept} -> {returned} MiB");
    }
}
