//! The data directory's filesystem: how much space there is, and what the broker does when it
//! runs out.
//!
//! The WAL, the local archive (`file://` stores) and the disk cache may share one filesystem,
//! which may be small (a 100 MiB volume, a tmpfs). Three rules keep a full disk from costing
//! data or a restart:
//! - the default WAL budget is sized from the filesystem (half of what the disk cache leaves),
//!   not a fixed 4 GiB that a small disk cannot hold;
//! - producers get the retriable KAFKA_STORAGE_ERROR while free space is below a reserve
//!   ([`reserve_bytes`]), before the disk is actually full;
//! - if a write fails anyway (the reserve was overrun, or something else filled the disk), the
//!   WAL rolls the write back and suspends; [`crate::Broker::run_disk_watch`] rolls the
//!   partitions back to what was written and resumes the WAL once space is back, with no
//!   restart. Reads never stop.

use std::path::Path;

/// Size and free space of the filesystem holding `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Free for unprivileged writers (`f_bavail`).
    pub available: u64,
}

/// `statvfs` of `path`.
pub fn space(path: &Path) -> std::io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
    })
}

/// Whether `a` and `b` are on the same filesystem.
pub fn same_fs(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => true,
    }
}

/// Free space below which produce is refused: 5% of the filesystem, at least 8 MiB, at most
/// 1 GiB.
pub fn reserve_bytes(total: u64) -> u64 {
    (total / 20).clamp(8 << 20, 1 << 30)
}

/// The default WAL budget on a filesystem of `total` bytes of which `cache_bytes` go to the
/// disk cache: half of the rest (the other half is headroom for the local archive, the
/// metadata and the reserve), at most 4 GiB, at least 16 MiB.
pub fn default_wal_budget(total: u64, cache_bytes: u64) -> u64 {
    (total.saturating_sub(cache_bytes) / 2)
        .clamp(16 << 20, crate::config::defaults::WAL_BUDGET_MAX_BYTES)
}

/// The disk cache size that fits a filesystem of `total` bytes: what was asked, but at most a
/// quarter of the filesystem.
pub fn fitting_cache_bytes(asked: usize, total: u64) -> usize {
    asked.min((total / 4) as usize)
}

/// Whether an error (or any error it was caused by) is "no space left on device".
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::ENOSPC)
                || io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
            // A wrapping io::Error's `source` skips the error it wraps: look at it directly.
            if let Some(inner) = io.get_ref() {
                if is_no_space(inner) {
                    return true;
                }
            }
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_fit_the_filesystem() {
        const MIB: u64 = 1 << 20;
        // A 100 MiB volume: the budget is far below the disk, the cache memory only.
        assert_eq!(fitting_cache_bytes(1 << 30, 100 * MIB), 25 * MIB as usize);
        assert_eq!(default_wal_budget(100 * MIB, 0), 50 * MIB);
        assert_eq!(reserve_bytes(100 * MIB), 8 * MIB);
        // A large disk keeps the 4 GiB ceiling and a 1 GiB reserve.
        assert_eq!(default_wal_budget(1 << 40, 1 << 30), 4 << 30);
        assert_eq!(reserve_bytes(1 << 40), 1 << 30);
        // Tiny: never zero.
        assert_eq!(default_wal_budget(MIB, 0), 16 * MIB);
    }

    #[test]
    fn statvfs_reads_this_filesystem() {
        let s = space(Path::new(".")).unwrap();
        assert!(s.total > 0 && s.available <= s.total);
        assert!(same_fs(Path::new("."), Path::new(".")));
    }

    #[test]
    fn no_space_is_found_through_the_error_chain() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_no_space(&io));
        let wrapped = std::io::Error::other(io);
        assert!(is_no_space(&wrapped));
        assert!(!is_no_space(&std::io::Error::other("nope")));
    }
}
