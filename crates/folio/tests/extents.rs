//! `file_extents`: the data and hole extents of a real sparse file (SEEK_DATA/SEEK_HOLE).

use std::os::unix::fs::FileExt;

use folio::backend::extents::file_extents;
use folio::backend::Allocation;

#[test]
fn a_sparse_file_has_holes_and_data_where_written() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("sparse"))
        .unwrap();
    let size = 8u64 << 20;
    f.set_len(size).unwrap();
    f.write_all_at(&[1u8; 4096], 4 << 20).unwrap();
    let ext = file_extents(&f, size, 0, size, 64).unwrap();
    assert_eq!(ext.iter().map(|e| e.len).sum::<u64>(), size);
    // Where the file system supports holes (ext4, xfs, tmpfs, btrfs), the middle is data
    // and the rest holes; the written block is data in every case.
    let mut pos = 0;
    for e in &ext {
        if (pos..pos + e.len).contains(&(4 << 20)) {
            assert_eq!(e.allocation, Allocation::Data);
        }
        pos += e.len;
    }
    if ext.len() > 1 {
        assert_eq!(ext[0].allocation, Allocation::Hole);
        assert_eq!(ext.last().unwrap().allocation, Allocation::Hole);
    }
    // Bounded in count, never empty.
    assert_eq!(file_extents(&f, size, 0, size, 1).unwrap().len(), 1);
    assert!(file_extents(&f, size, size, 10, 8).unwrap().is_empty());
}
