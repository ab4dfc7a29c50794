//! Key pairs made with the openssl CLI, as PEM files.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// An RSA-2048 key pair: (private PEM path, public PEM path).
pub fn rsa_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

/// An EC P-256 key pair (SEC1 private key, as `openssl ecparam` writes).
pub fn ec_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args([
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
        ])
        .arg(&private));
    run(Command::new("openssl")
        .args(["ec", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

/// A self-signed RSA-2048 certificate and its key (PKCS#8): what the
/// [`crate::token`] server signs with. Returns (key path, cert path).
pub fn rsa_self_signed(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(subject)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (key, cert)
}

/// A fresh CA and a server certificate for 127.0.0.1 signed by it (EC
/// P-256), in `dir`: `ca.key`, `certs/ca.crt` (so `certs/` serves as
/// skopeo's `--cert-dir`), `server.key`, `server.pem`.
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub cert_dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        let p = |n: &str| dir.join(n);
        let cert_dir = p("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        let ca_pem = cert_dir.join("ca.crt");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=cloister test CA",
            ])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(&ca_pem)
            .args([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ]));
        run(Command::new("openssl")
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(p("ext.cnf"))
            .arg("-out")
            .arg(p("server.pem")));
        Self {
            ca_pem,
            cert_dir,
            server_cert: p("server.pem"),
            server_key: p("server.key"),
        }
    }
}
