//! Image locking: one server (one cache) per image file at a time.
//!
//! Two caches over one file serve stale reads and lose updates: each believes its cached pages
//! are the file's contents. So, like qemu's image locking, a server locks each image file it
//! opens: exclusively to write it, shared to only read it (several read-only servers may share
//! an image; none may while a writer has it). The lock is `flock(2)`, which belongs to the
//! open file description: it lasts as long as the image stays open (in the cache's backend or
//! the plain-file device), is released when the process ends however it ends, and conflicts
//! between two opens in one process too. It is advisory: it keeps out other Folio servers and
//! anything else that locks, not a program that writes without asking (qemu takes its own,
//! byte-range locks, which `flock` does not see). On a file system without locks (`ENOLCK`,
//! `EOPNOTSUPP`) the image is served unlocked, with a warning.
//!
//! Owns: taking the lock ([`lock_image`]), telling a path exported twice
//! ([`check_distinct_images`]) and the typed error [`ImageLockError`]. Does not own: opening
//! images (`folio serve`). Never blocks: the lock is tried, not waited for.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// How an image is used, and so which lock it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageAccess {
    /// Read only: a shared lock (other readers may hold it too).
    ReadOnly,
    /// Read and written: an exclusive lock.
    ReadWrite,
}

/// Why an image cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageLockError {
    /// Another server or cache (in this process or another) holds the image's lock.
    #[error(
        "{}: the image is in use: another server or cache holds its lock ({} wanted); two \
         caches over one file serve stale reads and lose updates, so stop the other user first",
        path.display(),
        match access { ImageAccess::ReadOnly => "a shared lock to read it", ImageAccess::ReadWrite => "an exclusive lock to write it" }
    )]
    InUse {
        /// The image.
        path: PathBuf,
        /// The access that was refused.
        access: ImageAccess,
    },
    /// One image is named by two exports (the same file, possibly through different paths).
    #[error(
        "{} is exported twice (as {first:?} and as {second:?}): serve an image from one export",
        path.display()
    )]
    ExportedTwice {
        /// The image as the second export names it.
        path: PathBuf,
        /// The first export's name.
        first: String,
        /// The second export's name.
        second: String,
    },
    /// Locking failed for another reason.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The image.
        path: PathBuf,
        /// What `flock` said.
        #[source]
        source: io::Error,
    },
}

/// Locks `file`, the image at `path`, for `access` (see the module docs), or fails with
/// [`ImageLockError::InUse`] if another open of it holds a conflicting lock. The lock lasts as
/// long as `file` (or a duplicate of it) stays open.
pub fn lock_image(file: &File, path: &Path, access: ImageAccess) -> Result<(), ImageLockError> {
    let op = match access {
        ImageAccess::ReadOnly => FlockOperation::NonBlockingLockShared,
        ImageAccess::ReadWrite => FlockOperation::NonBlockingLockExclusive,
    };
    match rustix::fs::flock(file, op) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ImageLockError::InUse {
            path: path.to_path_buf(),
            access,
        }),
        Err(e @ (rustix::io::Errno::NOLCK | rustix::io::Errno::OPNOTSUPP)) => {
            tracing::warn!(
                image = %path.display(),
                error = %e,
                "the file system cannot lock the image: serving it unlocked (nothing stops a \
                 second server over it)"
            );
            Ok(())
        }
        Err(e) => Err(ImageLockError::Lock {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Fails with [`ImageLockError::ExportedTwice`] if two of `images` (export name, path) are the
/// same file (same device and inode, whatever the paths say). Paths that do not exist are
/// skipped: opening them reports that.
pub fn check_distinct_images<'a>(
    images: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<(), ImageLockError> {
    let mut seen: Vec<((u64, u64), &str)> = Vec::new();
    for (name, path) in images {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let id = (meta.dev(), meta.ino());
        if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
            return Err(ImageLockError::ExportedTwice {
                path: path.to_path_buf(),
                first: first.to_string(),
                second: name.to_string(),
            });
        }
        seen.push((id, name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_writer_excludes_everyone_and_readers_share() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, [0u8; 4096]).unwrap();
        let (a, b) = (open(&p), open(&p));
        lock_image(&a, &p, ImageAccess::ReadWrite).unwrap();
        for access in [ImageAccess::ReadWrite, ImageAccess::ReadOnly] {
            let e = lock_image(&b, &p, access).unwrap_err();
            assert!(matches!(e, ImageLockError::InUse { .. }), "{e}");
            assert!(e.to_string().contains("in use"), "{e}");
        }
        // Closing the writer's file releases its lock.
        drop(a);
        lock_image(&b, &p, ImageAccess::ReadOnly).unwrap();
        let c = open(&p);
        lock_image(&c, &p, ImageAccess::ReadOnly).unwrap();
        let d = open(&p);
        let e = lock_image(&d, &p, ImageAccess::ReadWrite).unwrap_err();
        assert!(matches!(e, ImageLockError::InUse { .. }), "{e}");
    }

    #[test]
    fn one_file_under_two_names_is_exported_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, [0u8; 512]).unwrap();
        std::fs::write(&b, [0u8; 512]).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let missing = dir.path().join("missing");
        check_distinct_images([("x", a.as_path()), ("y", b.as_path()), ("z", &missing)]).unwrap();
        let e = check_distinct_images([("x", a.as_path()), ("y", b.as_path()), ("z", &link)])
            .unwrap_err();
        match &e {
            ImageLockError::ExportedTwice { first, second, .. } => {
                assert_eq!((first.as_str(), second.as_str()), ("x", "z"))
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("exported twice"), "{e}");
    }
}
