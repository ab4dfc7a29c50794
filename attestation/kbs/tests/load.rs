//! The KBS under load: 1,000 attestations from 16 concurrent clients over
//! real HTTPS on loopback, each a fresh guest (new connection, new TEE key,
//! full RCAR, then the resource), with hostile attempts mixed in on the same
//! KBS at the same time. None of the honest ones may be lost or get the
//! wrong bytes; none of the hostile ones may get a resource.
//!
//! The rate is printed for information only (the benchmark is
//! `cloister-kbs bench`); nothing here asserts a time.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;

const CLIENTS: usize = 16;
const ATTESTATIONS: usize = 1000;
/// One hostile attempt after every this many honest attestations of a client.
const HOSTILE_EVERY: usize = 8;
const SECRET: &[u8] = b"the image key under load";

#[derive(Default)]
struct Counts {
    honest: AtomicUsize,
    hostile_refused: AtomicUsize,
}

/// One of three attacks, each on a fresh session of its own: the evidence
/// of an earlier challenge replayed against a new nonce; a report with one
/// byte flipped; and a resource asked for with no token at all.
async fn hostile(env: &Env, kind: usize) -> Result<(), String> {
    let mut c = env.client();
    match kind % 3 {
        0 => {
            let old = c.auth().await.map_err(|e| e.to_string())?;
            let att = c.build_attestation(&old).await.map_err(|e| e.to_string())?;
            c.auth().await.map_err(|e| e.to_string())?;
            match c.post_attestation(&att).await {
                Ok(_) => return Err("a replayed attestation got a token".into()),
                Err(e) => {
                    refused(&e, "nonce-mismatch");
                }
            }
        }
        1 => {
            let ch = c.auth().await.map_err(|e| e.to_string())?;
            let mut att = c.build_attestation(&ch).await.map_err(|e| e.to_string())?;
            let ev = &mut att.tee_evidence.primary_evidence;
            let mut report = STANDARD
                .decode(ev["report"].as_str().ok_or("no report in the evidence")?)
                .map_err(|e| e.to_string())?;
            report[0x90] ^= 1; // inside the signed part (the measurement)
            ev["report"] = STANDARD.encode(&report).into();
            if c.post_attestation(&att).await.is_ok() {
                return Err("a tampered report got a token".into());
            }
        }
        _ => {}
    }
    // Whatever happened above, this client holds no token: no resource.
    match c.fetch_resource("default", "key", "k1").await {
        Ok(_) => Err("a client without valid evidence got the resource".into()),
        Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_attestations_from_sixteen_clients() {
    let env = Arc::new(Env::new(true, Duration::from_secs(300)));
    env.good_reference().await;
    env.admin()
        .set_resource("default/key/k1", SECRET)
        .await
        .unwrap();

    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (env, counts, next) = (env.clone(), counts.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= ATTESTATIONS {
                    return Ok::<(), String>(());
                }
                // A booting guest: new client, new TEE key, new connection.
                let mut c = env.client();
                let got = c
                    .get_resource("default", "key", "k1")
                    .await
                    .map_err(|e| format!("client {client}, attestation {n}: {e}"))?;
                if got != SECRET {
                    return Err(format!("client {client}, attestation {n}: wrong bytes"));
                }
                counts.honest.fetch_add(1, Ordering::Relaxed);
                mine += 1;
                if mine.is_multiple_of(HOSTILE_EVERY) {
                    hostile(&env, client + mine)
                        .await
                        .map_err(|e| format!("client {client}: {e}"))?;
                    counts.hostile_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let honest = counts.honest.load(Ordering::Relaxed);
    let hostile = counts.hostile_refused.load(Ordering::Relaxed);
    println!(
        "{honest} attestations from {CLIENTS} clients in {secs:.1} s ({:.1}/s, debug build), \
         {hostile} hostile attempts refused",
        honest as f64 / secs
    );
    assert_eq!(honest, ATTESTATIONS, "attestations lost");
    assert!(
        hostile >= ATTESTATIONS / HOSTILE_EVERY - CLIENTS,
        "{hostile}"
    );
}
