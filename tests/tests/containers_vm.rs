//! Containers in a real guest: the agent pulls a signed image from a real
//! registry on the host's loopback (reached through QEMU's user networking
//! and the initdata's registry mirror), verifies it, unpacks it, and runs it
//! with libcontainer; the host drives it over vsock like a runtime would.
mod common;
#[path = "common/signed.rs"]
mod signed;

use std::time::Duration;

use cloister_host::agent_client::Agent;
use cloister_host::sandbox::{BootOptions, Sandbox};
use cloister_test_support::{tools, Registry, Setup};
use common::*;
use signed::{initdata, signed_image};

async fn boot() -> Option<(Sandbox, tempfile::TempDir)> {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return None;
    };
    if !qemu() {
        return None;
    }
    let run = tempfile::tempdir().unwrap();
    let mut opts = BootOptions::new(k, i);
    opts.vm.memory_mib = 512;
    opts.vm.user_net = true;
    opts.run_dir = Some(run.path().join("vm"));
    opts.agent_timeout = Duration::from_secs(60);
    let sb = Sandbox::boot(&opts).await.expect("boot");
    Some((sb, run))
}

fn console(run: &tempfile::TempDir) -> String {
    std::fs::read_to_string(run.path().join("vm/console.log")).unwrap_or_default()
}

async fn output(agent: &Agent, id: &str, exec: &str) -> (String, String) {
    let out = agent.read_all(id, exec, false, |_| {}).await.unwrap();
    let err = agent.read_all(id, exec, true, |_| {}).await.unwrap();
    (text(&out), text(&err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_image_runs_in_the_guest_and_an_unsigned_one_is_refused() {
    if !tools::registry_tools_present() {
        return;
    }
    let Some((sb, run)) = boot().await else {
        return;
    };
    let reg = Registry::start(Setup::HTTP);
    let work = tempfile::tempdir().unwrap();
    let img = signed_image(&reg, work.path());
    let allow_all = std::fs::read_to_string(repo_root().join("policies/allow-all.rego")).unwrap();
    let agent = &sb.agent;
    cloister_host::pod::start_sandbox(
        agent,
        "pod1",
        "pod-one",
        &initdata(&allow_all, &reg, &img.public_pem),
        &cloister_host::pod::network::GuestNetwork::user(),
    )
    .await
    .unwrap();

    // The container: security settings, output and exit code, from the
    // image pulled inside the guest.
    let script = "echo out; echo err >&2; cat /etc/motd; id -u; hostname; \
                  grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status; \
                  echo memmax=$(cat /sys/fs/cgroup/memory.max 2>/dev/null); exit 7";
    let mut spec = cloister_protocol::oci::default_spec(&["/bin/sh", "-c", script]);
    spec["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "cgroup"}));
    spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
    let created = agent
        .create_container(
            "c1",
            &img.reference,
            &serde_json::to_vec(&spec).unwrap(),
            Duration::from_secs(300),
        )
        .await;
    let created = match created {
        Ok(c) => c,
        Err(e) => panic!("CreateContainer: {e:?}\n--- console ---\n{}", console(&run)),
    };
    // What the agent verified, as the host learns it.
    assert!(created.image_digest.starts_with("sha256:"), "{created:?}");
    assert!(created.signature.contains(" signed by "), "{created:?}");
    assert_eq!(created.layers_reused, 0, "{created:?}");
    assert!(created.layers_downloaded >= 2, "{created:?}");
    assert_eq!(created.encrypted_layers, 0);
    assert_eq!(created.attestation, "", "no keys, no attestation");
    agent.start_container("c1").await.unwrap();
    let (out, err) = output(agent, "c1", "").await;
    assert_eq!(
        agent.wait("c1", "").await.unwrap(),
        7,
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert_eq!(err, "err\n");
    assert!(
        out.starts_with("out\nhello from the image\n1000\nbox\n"),
        "{out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("CapBnd:\t0000000020000420"), "{out}");
    assert!(
        out.contains("memmax=67108864"),
        "cgroup v2 memory limit: {out}"
    );
    agent.remove_container("c1", 0).await.unwrap();

    // Exec into a running container.
    let spec = cloister_protocol::oci::default_spec(&["/bin/sh", "-c", "sleep 600"]);
    agent
        .create_container(
            "c2",
            &img.reference,
            &serde_json::to_vec(&spec).unwrap(),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    agent.start_container("c2").await.unwrap();
    agent
        .exec(
            "c2",
            "e1",
            &["/bin/sh", "-c", "echo exec-ok; ls /proc | grep -c '^[0-9]'"],
        )
        .await
        .unwrap();
    let (out, _) = output(agent, "c2", "e1").await;
    assert_eq!(agent.wait("c2", "e1").await.unwrap(), 0);
    // Its own pid namespace: sleep's sh, the exec's sh, ls and grep.
    assert!(out.starts_with("exec-ok\n"), "{out}");
    let procs: u32 = out.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(
        procs <= 5,
        "the container sees only its own processes: {out}"
    );

    // An unsigned image is refused before anything is unpacked, and the
    // error says why.
    let e = agent
        .create_container(
            "c3",
            &img.unsigned,
            &serde_json::to_vec(&spec).unwrap(),
            Duration::from_secs(300),
        )
        .await
        .unwrap_err();
    let msg = format!("{e:?}");
    assert!(msg.contains("FAILED_PRECONDITION"), "{msg}");
    assert!(msg.to_lowercase().contains("signature"), "{msg}");

    let metrics = agent.metrics().await.unwrap();
    assert!(
        metrics.contains("cloister_agent_image_pulls_total{outcome=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloister_agent_image_pulls_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    // The second pull of the same image reused its layers.
    assert!(
        !metrics.contains("cloister_agent_image_layers_reused_total 0\n"),
        "{metrics}"
    );

    agent.destroy_sandbox().await.unwrap();
    sb.shutdown();
}
