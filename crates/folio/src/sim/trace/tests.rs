//! Unit tests of the trace readers (`trace.rs`): each layout, and malformed input.

use super::*;

#[test]
fn csv_splits_requests_into_pages() {
    let csv = b"version,time,op,size,lbn\n1,1,28,4096,8\n1,2,2a,0,0\n1,3,28,8192,7\n";
    let pages = parse_pages(csv, TraceFormat::Csv, 4096).unwrap();
    // 8*512=4096 .. 8191 -> page 1; size 0 -> 1 byte at 0 -> page 0; 3584 .. 11775 -> 0..=2.
    assert_eq!(pages, vec![1, 0, 0, 1, 2]);
}

#[test]
fn csv_errors_name_record_and_offset() {
    let csv = b"version,time,op,size,lbn\n1,1,28,4096,8\n1,2,28,40";
    let err = parse_pages(csv, TraceFormat::Csv, 4096).unwrap_err();
    match err {
        TraceError::Malformed { record, offset, .. } => assert_eq!((record, offset), (2, 39)),
        e => panic!("{e}"),
    }
    let csv = b"1,1,28,x,8\n";
    assert!(matches!(
        parse_pages(csv, TraceFormat::Csv, 4096),
        Err(TraceError::Malformed {
            record: 1,
            offset: 0,
            ..
        })
    ));
}

#[test]
fn binary_truncation_is_an_error() {
    let mut rec = vec![0u8; 24];
    rec[4..12].copy_from_slice(&77u64.to_le_bytes());
    rec.extend_from_slice(&[1, 2, 3]);
    let err = parse_pages(&rec, TraceFormat::OracleGeneral, 4096).unwrap_err();
    assert!(matches!(
        err,
        TraceError::Truncated {
            record: 2,
            offset: 24,
            got: 3,
            expected: 24
        }
    ));
    let mut v = vec![0u8; 32];
    v[4..8].copy_from_slice(&8192u32.to_le_bytes());
    v[16..24].copy_from_slice(&16u64.to_le_bytes());
    assert_eq!(
        parse_pages(&v, TraceFormat::Vscsi, 4096).unwrap(),
        vec![2, 3]
    );
    let mut v2 = v.clone();
    v2[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        parse_pages(&v2, TraceFormat::Vscsi, 4096),
        Err(TraceError::Malformed { record: 1, .. })
    ));
}

#[test]
fn lines_and_inference() {
    assert_eq!(
        parse_pages(b"1\n\n# c\n 2 \r\n3", TraceFormat::Lines, 1).unwrap(),
        vec![1, 2, 3]
    );
    assert!(matches!(
        parse_pages(b"1\nx\n", TraceFormat::Lines, 1),
        Err(TraceError::Malformed {
            record: 2,
            offset: 2,
            ..
        })
    ));
    let f = |p: &str| TraceFormat::from_path(Path::new(p));
    assert_eq!(f("a/b.csv"), Some(TraceFormat::Csv));
    assert_eq!(f("x.oracleGeneral.bin"), Some(TraceFormat::OracleGeneral));
    assert_eq!(f("x.vscsi"), Some(TraceFormat::Vscsi));
    assert_eq!(f("x.txt"), Some(TraceFormat::Lines));
    assert_eq!(f("x"), None);
    assert_eq!(
        "oracle-general".parse::<TraceFormat>().unwrap(),
        TraceFormat::OracleGeneral
    );
}

#[test]
fn lis_u32_and_lirs_text() {
    let lis = b"110765 3 0 0\n7 1 0 1\n\n9 0 0 2\n";
    assert_eq!(
        parse_pages(lis, TraceFormat::Lis, 4096).unwrap(),
        vec![110765, 110766, 110767, 7]
    );
    for (bad, record) in [
        (&b"1 1 0 0\n2 x 0 1\n"[..], 2),
        (b"18446744073709551615 2\n", 1),
    ] {
        assert!(matches!(
            parse_pages(bad, TraceFormat::Lis, 1),
            Err(TraceError::Malformed { record: r, .. }) if r == record
        ));
    }
    assert!(parse_pages(b"0 99999999999 0 0\n", TraceFormat::Lis, 1).is_err());
    let mut u = Vec::new();
    for k in [192513u32, 0, u32::MAX] {
        u.extend_from_slice(&k.to_le_bytes());
    }
    assert_eq!(
        parse_pages(&u, TraceFormat::U32, 4096).unwrap(),
        vec![192513, 0, u32::MAX as u64]
    );
    assert!(matches!(
        parse_pages(&u[..11], TraceFormat::U32, 1),
        Err(TraceError::Truncated {
            record: 3,
            offset: 8,
            ..
        })
    ));
    assert_eq!(
        parse_pages(b"0\n1\n*\n2\n", TraceFormat::Lines, 1).unwrap(),
        vec![0, 1, 2]
    );
}

#[test]
fn inference_by_name_and_content() {
    let f = |p: &str, head: &[u8]| TraceFormat::infer(Path::new(p), head);
    assert_eq!(f("OLTP.lis.zst", b""), Some(TraceFormat::Lis));
    assert_eq!(f("x.u32.gz", b""), Some(TraceFormat::U32));
    assert_eq!(f("multi3.trace.gz", b"0\n1\n*\n"), Some(TraceFormat::Lines));
    assert_eq!(f("w106.trace.xz", &[1, 0xf0, 2, 0]), Some(TraceFormat::U32));
    assert_eq!(f("a.csv.xz", b""), Some(TraceFormat::Csv));
    assert_eq!(f("a.zst", b"1\n"), None);
    assert_eq!(
        Compression::from_path(Path::new("a.b.ZST")),
        Compression::Zstd
    );
    assert_eq!(Compression::from_path(Path::new("a.gz")), Compression::Gzip);
    assert_eq!(Compression::from_path(Path::new("a.xz")), Compression::Xz);
    assert_eq!(
        Compression::from_path(Path::new("a.lis")),
        Compression::None
    );
    assert_eq!("lis".parse::<TraceFormat>().unwrap(), TraceFormat::Lis);
    assert_eq!("u32".parse::<TraceFormat>().unwrap(), TraceFormat::U32);
}

#[cfg(feature = "compressed-traces")]
#[test]
fn corrupt_compressed_input_is_an_error() {
    for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
        assert!(
            c.decode(b"not compressed at all".to_vec()).is_err(),
            "{c:?}"
        );
    }
}
