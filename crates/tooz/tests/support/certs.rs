//! Throwaway TLS material for the tests that start TLS servers of their own: a CA made by
//! `openssl`, and a server and a client certificate it signs (for localhost and 127.0.0.1).

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The test's own server, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn found(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, and a server and a client certificate it signs (for localhost and 127.0.0.1).
pub fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=tooz test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    for name in ["server", "client"] {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subject = format!("/CN=tooz test {name}");
        let mut req = vec!["req", "-subj", &subject];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &pem,
            ],
        );
    }
}

/// A lock taken and released, a group joined, listed and left: what a TLS test checks works
/// through a started coordinator whose member id is `member`.
pub async fn lock_and_group_work(coord: &tooz::Coordinator, member: &str) {
    let guard = coord.lock("tls-lock").acquire().await.unwrap();
    coord
        .join_group_create("tls-group", &b"zone-a"[..])
        .await
        .unwrap();
    assert!(coord
        .get_members("tls-group")
        .await
        .unwrap()
        .contains(&member.into()));
    coord.leave_group("tls-group").await.unwrap();
    assert!(guard.release().await.unwrap());
}
