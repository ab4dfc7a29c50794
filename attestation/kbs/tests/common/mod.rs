//! The sim flow's parts on loopback, over real HTTPS: the real sim chip on a
//! Unix socket, cloister-kbs with its admin API, and KBS clients (crate
//! cloister-kbs-client) with the sim attester. Shared by sim_flow.rs and
//! load.rs.
#![allow(dead_code)]

use std::time::Duration;

use cloister_kbs::admin_client::AdminClient;
use cloister_kbs::{KbsConfig, KbsServer, ServerConfig, TlsSource};
use cloister_kbs_client::{KbsClient, KbsClientConfig, KbsClientError, SimAttester, UnixTransport};
use cloister_sim_chip::{SimChip, SimChipServer};
use sha2::{Digest, Sha256};

pub const MEASUREMENT: [u8; 48] = [0x4d; 48];
pub const INITDATA: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const PREFIX: &str = "urn:cloister:kbs:problem:";

pub fn host_data() -> [u8; 32] {
    Sha256::digest(INITDATA.as_bytes()).into()
}

pub struct Env {
    pub chip: SimChip,
    _chip_server: SimChipServer,
    pub kbs: Option<KbsServer>,
    addrs: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    pub config: KbsConfig,
    // Last, so the servers above stop before their files go.
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(allow_sim: bool, session_ttl: Duration) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let chip = SimChip::load_or_create(&dir.path().join("sim")).unwrap();
        let chip_server = chip
            .serve_unix(
                &dir.path().join("vsock.sock_1025"),
                MEASUREMENT,
                host_data(),
            )
            .unwrap();
        let mut config = KbsConfig::new(dir.path().join("kbs"), ADMIN_TOKEN.into());
        config.allow_sim = allow_sim;
        config.sim_ark = Some(chip.ca().ark_pem().as_bytes().to_vec());
        config.session_ttl = session_ttl;
        let mut env = Env {
            dir,
            chip,
            _chip_server: chip_server,
            kbs: None,
            addrs: None,
            config,
        };
        env.start();
        env
    }

    /// Starts the KBS, on the addresses of the previous start if there was one.
    pub fn start(&mut self) {
        let (listen, admin_listen) = self.addrs.unwrap_or((
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ));
        let server = ServerConfig {
            listen,
            admin_listen,
            tls: TlsSource::SelfSigned {
                sans: vec!["127.0.0.1".into(), "localhost".into()],
            },
        };
        let kbs = KbsServer::start(&self.config, &server).unwrap();
        self.addrs = Some((kbs.addr, kbs.admin_addr));
        self.kbs = Some(kbs);
    }

    pub async fn restart(&mut self) {
        self.kbs.take().unwrap().shutdown().await;
        self.start();
    }

    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("kbs/tls/ca.pem")).unwrap()
    }

    pub fn admin(&self) -> AdminClient {
        let addr = self.kbs.as_ref().unwrap().admin_addr;
        AdminClient::new(&format!("https://{addr}"), &self.ca(), ADMIN_TOKEN).unwrap()
    }

    pub fn client_config(&self) -> KbsClientConfig {
        let addr = self.kbs.as_ref().unwrap().addr;
        let mut c = KbsClientConfig::new(format!("https://{addr}"), self.ca());
        c.init_data = Some(INITDATA.into());
        c.retry.attempts = 1;
        c
    }

    pub fn client(&self) -> KbsClient {
        self.client_with(self.client_config())
    }

    pub fn client_with(&self, config: KbsClientConfig) -> KbsClient {
        let attester = SimAttester::new(UnixTransport(self.dir.path().join("vsock.sock_1025")));
        KbsClient::new(config, Box::new(attester)).unwrap()
    }

    /// Reference values that the sim guest meets, with overrides.
    pub async fn reference(&self, measurement: &str, host_data: &str) {
        self.admin()
            .set_reference_values(&format!(
                r#"{{"measurement": "{measurement}", "host_data": "{host_data}"}}"#
            ))
            .await
            .unwrap();
    }

    pub async fn good_reference(&self) {
        self.reference(&hex::encode(MEASUREMENT), &hex::encode(host_data()))
            .await;
    }
}

/// The problem of a refusal, checked for its type.
pub fn refused(e: &KbsClientError, name: &str) -> cloister_kbs_client::Problem {
    let p = e
        .problem()
        .unwrap_or_else(|| panic!("not a refusal: {e}"))
        .clone();
    assert_eq!(p.problem_type, format!("{PREFIX}{name}"), "{e}");
    p
}
