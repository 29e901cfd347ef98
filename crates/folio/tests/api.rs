//! The public API's names and types (issue 17): each renamed item's deprecated old name still
//! compiles and does exactly what the new name does.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Duration;

use folio::{CacheConfig, MemoryBackend, PageCache};

const PS: usize = 4096;

/// Each deprecated builder sets the same setting as its new name: the two configurations are
/// equal field by field (compared through `Debug`, which prints every field).
#[test]
fn old_config_names_set_what_the_new_names_set() {
    let same = |old: CacheConfig, new: CacheConfig| {
        assert_eq!(format!("{old:?}"), format!("{new:?}"));
    };
    let base = || CacheConfig::new(1 << 20);
    same(base().max_io_bytes(8 * PS), base().io_bytes_max(8 * PS));
    same(
        base().readahead_max_bytes(3 * PS),
        base().readahead_bytes_max(3 * PS),
    );
    same(
        base().throttle_max_wait(Duration::from_millis(7)),
        base().throttle_wait_max(Duration::from_millis(7)),
    );
    // And the setting does change something: a config with another value differs.
    assert_ne!(
        format!("{:?}", base().io_bytes_max(8 * PS)),
        format!("{:?}", base().io_bytes_max(16 * PS))
    );
}

/// The renamed counters' old names carry the same values as the new ones.
#[test]
fn old_stats_names_carry_the_new_values() {
    let backend = Arc::new(MemoryBackend::from_bytes(vec![7; 8 * PS]));
    let cache = PageCache::new(
        backend,
        CacheConfig::with_budget_pages(4).readahead_bytes_max(0),
    )
    .unwrap();
    let mut buf = vec![0; 2 * PS];
    cache.read_exact_at(&mut buf, 0).unwrap();
    cache.write_all_at(&buf, 4 * PS as u64).unwrap();
    cache.sync().unwrap();
    let s = cache.stats();
    assert_eq!(s.read_bytes, 2 * PS as u64, "{s:?}");
    assert_eq!(s.writeback_bytes, 2 * PS as u64, "{s:?}");
    assert_eq!(s.bytes_read, s.read_bytes);
    assert_eq!(s.bytes_written, s.writeback_bytes);
}

/// The io_uring backend's renamed constants keep their values under the old names.
#[test]
fn old_uring_names_are_the_new_values() {
    use folio::backend::uring;
    assert_eq!(uring::DEFAULT_QUEUE_DEPTH, uring::QUEUE_DEPTH_DEFAULT);
    assert_eq!(
        uring::DEFAULT_INLINE_READ_PAGES,
        uring::INLINE_READ_PAGES_MAX_DEFAULT
    );
}

/// Configuration errors are `Error::Config` with a typed reason, and still map to
/// `InvalidInput` for callers that speak `std::io`.
#[test]
fn configuration_errors_are_typed_and_invalid_input() {
    use folio::{ConfigError, Error, PolicyKind};
    let err = PageCache::new(
        Arc::new(MemoryBackend::new()),
        CacheConfig::with_budget_pages(0),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config(ConfigError::BudgetTooSmall {
                budget_bytes: 0,
                page_size: 4096
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.to_io_error().kind(), std::io::ErrorKind::InvalidInput);
    let err = PageCache::new(
        Arc::new(MemoryBackend::new()),
        CacheConfig::with_budget_pages(4).page_size(128 << 10),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config(ConfigError::PageSize {
                page_size: 131072,
                min: 512,
                max: 65536
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid configuration: page size 131072 is not a power of two from 512 to 65536"
    );
    let err = "no-such-policy".parse::<PolicyKind>().unwrap_err();
    match &err {
        Error::Config(ConfigError::UnknownPolicy { name, known }) => {
            assert_eq!(name, "no-such-policy");
            assert!(known.contains(&"lru"), "{known:?}");
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("known: default, "), "{err}");
}

/// The page-numbered methods take a `PageNo` or a plain integer and mean the same page; the
/// pin reports it as a `PageNo`, and so does an error that names a page.
#[test]
fn page_numbers_are_page_nos_and_integers_still_work() {
    use folio::{Error, PageNo, Pager};
    let cache = PageCache::new(
        Arc::new(MemoryBackend::from_bytes(vec![0; 8 * PS])),
        CacheConfig::with_budget_pages(4),
    )
    .unwrap();
    cache.write_page(PageNo(2)).unwrap()[0] = 42;
    assert_eq!(cache.read_page(2).unwrap()[0], 42);
    let p: u64 = 2;
    assert_eq!(cache.read_page(p).unwrap()[0], 42);
    assert!(cache.page_state(PageNo::new(2)).is_some());
    assert_eq!(cache.page_state(2), cache.page_state(PageNo(2)));
    let pin = cache
        .pin_page(PageNo::containing(2 * PS as u64 + 5, PS))
        .unwrap();
    assert_eq!(pin.page_no(), PageNo(2));
    assert_eq!(pin.index(), 2);
    drop(pin);
    cache.decommit_page(PageNo(2)).unwrap();
    assert_eq!(cache.page_state(2), None);
    match cache.update_page(5u64) {
        Err(Error::NotResident { page }) => assert_eq!(page, PageNo(5)),
        r => panic!("{r:?}"),
    }
    let pin = cache.commit_page(3).unwrap();
    assert_eq!(u64::from(pin.page_no()), 3);
}
