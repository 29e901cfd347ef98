//! `folio serve` features with real clients: sparse images (`qemu-img map`, `nbdinfo --map`,
//! `qemu-img convert` and `nbdcopy` staying sparse), an image whose size is not a multiple of
//! 512, TLS (`nbdinfo nbds://`, `qemu-io` with x509 credentials, certificates made by the
//! test with openssl), socket activation (the test's listening socket handed over as fd 3),
//! several exports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod nbd;
use nbd::*;

/// A 64 MiB sparse image with data at 1 MiB (1 MiB of 0x11) and at 40 MiB (64 KiB of 0x22).
fn sparse_image(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("sparse.raw");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(&vec![0x11u8; MIB as usize], MIB).unwrap();
    f.write_all_at(&[0x22u8; 65536], 40 * MIB).unwrap();
    f.sync_all().unwrap();
    p
}

fn allocated_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn sparse_images_map_with_holes_and_copy_sparsely() {
    if !have("qemu-img") || !have("nbdinfo") || !have("nbdcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_image(dir.path());
    if allocated_bytes(&img) >= 64 * MIB {
        eprintln!("SKIPPED: the temporary directory's file system keeps no holes");
        assert!(std::env::var_os("FOLIO_REQUIRE_ALL").is_none_or(|v| v != "1"));
        return;
    }
    let srv = Served::start(&img, Addr::Tcp(free_port()), &[]);
    let uri = srv.uri();
    // qemu-img map: the holes are reported as not data, zero.
    let map = run(Command::new("qemu-img").args(["map", "--output=json", "-f", "raw", &uri]));
    let extents: Vec<serde_json::Value> = serde_json::from_str(&map).unwrap();
    let hole_bytes: u64 = extents
        .iter()
        .filter(|e| e["data"] == false && e["zero"] == true)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert!(hole_bytes >= 60 * MIB, "holes {hole_bytes} in {map}");
    for e in &extents {
        let (start, len) = (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap());
        if (start..start + len).contains(&MIB) || (start..start + len).contains(&(40 * MIB)) {
            assert_eq!(e["data"], true, "data reported as a hole: {map}");
        }
    }
    // nbdinfo --map: the same, in its own words.
    let m = run(Command::new("nbdinfo").arg("--map").arg(&uri));
    assert!(m.contains("hole,zero"), "{m}");
    assert!(m.lines().any(|l| l.contains("data")), "{m}");
    // qemu-img convert and nbdcopy copy it sparsely, and exactly.
    let out = dir.path().join("convert.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &uri])
        .arg(&out));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&img).unwrap());
    assert!(
        allocated_bytes(&out) < 8 * MIB,
        "convert wrote {} bytes",
        allocated_bytes(&out)
    );
    let out2 = dir.path().join("nbdcopy.raw");
    std::fs::File::create(&out2).unwrap();
    run(Command::new("nbdcopy").arg(&uri).arg(&out2));
    assert!(std::fs::read(&out2).unwrap() == std::fs::read(&img).unwrap());
    assert!(
        allocated_bytes(&out2) < 8 * MIB,
        "nbdcopy wrote {} bytes",
        allocated_bytes(&out2)
    );
}

#[test]
fn an_image_whose_size_is_not_a_multiple_of_512_with_qemu_io() {
    if !have("qemu-io") || !have("nbdinfo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("odd.raw");
    let size = 3 * MIB + 1234;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let srv = Served::start(&img, Addr::Tcp(free_port()), &[]);
    let got = run(Command::new("nbdinfo").arg("--size").arg(srv.uri()));
    assert_eq!(got.trim(), size.to_string());
    let tail = format!("{} 1234", 3 * MIB);
    qemu_io(&srv.uri(), &[&format!("write -P 0x77 {tail}"), "flush"]);
    qemu_io(&srv.uri(), &[&format!("read -P 0x77 {tail}")]);
    drop(srv);
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert!(bytes[3 * MIB as usize..].iter().all(|&b| b == 0x77));
}

/// A CA and a server certificate for 127.0.0.1 and localhost (EC P-256, valid 2 days), made
/// with openssl in `dir`: ca-cert.pem (what clients trust), server-cert.pem, server-key.pem.
fn make_certificates(dir: &Path) {
    let ossl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ossl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca-cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=folio test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    ossl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server-key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca-cert.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "server-cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_with_nbdinfo_nbds_and_qemu_io_x509() {
    if !have("openssl") || !have("nbdinfo") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("pki");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let img = random_image(dir.path(), "img.raw", 4 * MIB);
    let port = free_port();
    let cert = certs.join("server-cert.pem");
    let key = certs.join("server-key.pem");
    let srv = Served::start(
        &img,
        Addr::Tcp(port),
        &[
            "--tls",
            "require",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // libnbd: nbds:// with the test CA.
    let uri = format!(
        "nbds://127.0.0.1:{port}/folio?tls-certificates={}",
        certs.display()
    );
    let size = run(Command::new("nbdinfo").arg("--size").arg(&uri));
    assert_eq!(size.trim(), (4 * MIB).to_string());
    // Plain text is refused: nbdinfo without TLS fails, and a raw OPT_GO gets TLS_REQD.
    let plain = Command::new("nbdinfo")
        .arg("--size")
        .arg(format!("nbd://127.0.0.1:{port}/folio"))
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain text accepted under --tls require"
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    let mut m = 1u32.to_be_bytes().to_vec();
    m.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    m.extend_from_slice(&7u32.to_be_bytes()); // OPT_GO
    m.extend_from_slice(&6u32.to_be_bytes());
    m.extend_from_slice(&[0; 6]);
    s.write_all(&m).unwrap();
    let mut r = [0u8; 20];
    s.read_exact(&mut r).unwrap();
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        0x8000_0005
    );
    // qemu with x509 credentials: write, read back, on one TLS connection each.
    let qemu = |cmd: &str| {
        let mut c = Command::new("qemu-io");
        c.arg("--object")
            .arg(format!(
                "tls-creds-x509,id=tls0,endpoint=client,dir={}",
                certs.display()
            ))
            .arg("--image-opts")
            .arg(format!(
                "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},\
                 export=folio,tls-creds=tls0"
            ))
            .args(["-c", cmd]);
        let out = run(&mut c);
        assert!(!out.contains("failed"), "{out}");
    };
    qemu("write -P 0x3c 65536 131072");
    qemu("read -P 0x3c 65536 131072");
    drop(srv);
}

#[test]
fn socket_activation_serves_the_listening_socket_handed_over_as_fd_3() {
    if !have("systemd-socket-activate") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = zero_image(dir.path(), "img.raw", 4 * MIB);
    let port = free_port();
    // systemd-socket-activate binds the socket, then execs folio with it as fd 3 and
    // LISTEN_FDS/LISTEN_PID set, as systemd does.
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(env!("CARGO_BIN_EXE_folio"))
        .arg("serve")
        .arg(&img)
        .args(["--budget", "8MiB", "--listen", "127.0.0.1:1"]) // ignored: fd 3 wins
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut served = Served {
        child: Some(child),
        addr: Addr::Tcp(port),
    };
    served.wait_ready();
    qemu_io(&served.uri(), &["write -P 0x5e 4096 8192"]);
    qemu_io(&served.uri(), &["read -P 0x5e 4096 8192"]);
    let st = served.terminate();
    assert!(st.success(), "{st}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains(&format!("serving listen=127.0.0.1:{port}")),
        "did not serve the socket passed as fd 3: {log}"
    );
    let bytes = std::fs::read(&img).unwrap();
    assert!(bytes[4096..4096 + 8192].iter().all(|&b| b == 0x5e));
}

#[test]
fn several_exports_with_nbdinfo_list_and_qemu_io() {
    if !have("nbdinfo") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = zero_image(dir.path(), "a.raw", 2 * MIB);
    let b = zero_image(dir.path(), "b.raw", 3 * MIB);
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_folio"));
    cmd.arg("serve")
        .arg(format!("--export=alpha={}", a.display()))
        .arg(format!("--export=beta={}", b.display()))
        .args(["--budget", "8MiB", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let served = Served {
        child: Some(cmd.spawn().unwrap()),
        addr: Addr::Tcp(port),
    };
    served.wait_ready();
    let list = run(Command::new("nbdinfo")
        .arg("--list")
        .arg(format!("nbd://127.0.0.1:{port}")));
    assert!(
        list.contains("export=\"alpha\"") && list.contains("export=\"beta\""),
        "{list}"
    );
    qemu_io(&served.addr.uri("beta"), &["write -P 0x42 0 4096"]);
    qemu_io(&served.addr.uri("alpha"), &["read -P 0 0 4096"]);
    drop(served);
    assert!(std::fs::read(&b).unwrap()[..4096]
        .iter()
        .all(|&x| x == 0x42));
}
