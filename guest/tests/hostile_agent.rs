//! Hostile-host tests through the real agent process on a Unix socket: the
//! policy generated for the sample pod (policy/testdata/pod.yaml) is loaded
//! from initdata by CreateSandbox, then the host misbehaves.
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloister_policy::generate::{generate, Options};
use cloister_protocol::agent_ttrpc::{AgentClient, HealthClient};
use cloister_protocol::*;
use protobuf::Message;

const POD: &str = include_str!("../policy/testdata/pod.yaml");
const APP_SPEC: &str = include_str!("../policy/testdata/app-spec.json");
const APP_IMAGE: &str =
    "registry.example/web/app@sha256:4c3f2a1e5d6b7c8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382";
const ALLOW_ALL: &str = include_str!("../../policies/allow-all.rego");

struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cloister-agent"))
            .arg("--listen")
            .arg(format!("unix://{}", sock.display()))
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .args(extra)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "agent never created its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, dir, sock }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap()
    }

    async fn clients(&self) -> (HealthClient, AgentClient) {
        // The socket file appears at bind(), a moment before listen().
        let deadline = Instant::now() + Duration::from_secs(10);
        let c = loop {
            match ttrpc::asynchronous::Client::connect(&format!("unix://{}", self.sock.display()))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot connect to the agent: {e:?}"),
            }
        };
        (HealthClient::new(c.clone()), AgentClient::new(c))
    }

    async fn client(&self) -> AgentClient {
        self.clients().await.1
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(10_000_000_000)
}

fn initdata(policy: &str) -> String {
    assert!(!policy.contains("'''"));
    format!(
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\n{policy}'''\n\"kbs-url\" = \"https://kbs.example:8080\"\n"
    )
}

fn generated_policy(manifest: &str) -> String {
    generate(manifest, &Options::default()).unwrap().rego
}

async fn create_sandbox(a: &AgentClient, policy: &str) -> ttrpc::Result<CreateSandboxResponse> {
    a.create_sandbox(
        ctx(),
        &CreateSandboxRequest {
            sandbox_id: "sb1".into(),
            hostname: "web".into(),
            initdata: initdata(policy),
            ..Default::default()
        },
    )
    .await
}

/// The status code and message of a failed call.
fn failure<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> (ttrpc::Code, String) {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(r: ttrpc::Result<T>, rule: &str, needle: &str) {
    let (code, msg) = failure(r);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(
        msg.starts_with(&format!("{rule} denied by the agent policy")),
        "{msg}"
    );
    assert!(msg.contains(needle), "{needle:?} not in {msg}");
}

fn app_request(image: &str, spec: &serde_json::Value) -> CreateContainerRequest {
    CreateContainerRequest {
        container_id: "c1".into(),
        image: image.into(),
        oci_spec: serde_json::to_vec(spec).unwrap(),
        ..Default::default()
    }
}

fn app_spec() -> serde_json::Value {
    serde_json::from_str(APP_SPEC).unwrap()
}

async fn sandbox_with_generated_policy(extra: &[&str]) -> (Agent, AgentClient) {
    let agent = Agent::start(extra);
    let c = agent.client().await;
    let r = create_sandbox(&c, &generated_policy(POD)).await.unwrap();
    assert!(!r.bound_to_tee);
    (agent, c)
}

#[tokio::test]
async fn before_create_sandbox_only_health_details_and_create_sandbox_are_allowed() {
    let agent = Agent::start(&[]);
    let (h, c) = agent.clients().await;
    h.check(ctx(), &HealthCheckRequest::default())
        .await
        .unwrap();
    let d = c
        .get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap();
    assert!(!d.sandbox_created);
    assert_denied(
        c.exec_process(ctx(), &ExecProcessRequest::default()).await,
        "ExecProcessRequest",
        "sandbox is not created yet",
    );
    assert_denied(
        c.get_metrics(ctx(), &GetMetricsRequest::default()).await,
        "GetMetricsRequest",
        "sandbox is not created yet",
    );
    assert_denied(
        c.set_policy(
            ctx(),
            &SetPolicyRequest {
                policy: ALLOW_ALL.into(),
                ..Default::default()
            },
        )
        .await,
        "SetPolicyRequest",
        "sandbox is not created yet",
    );
    assert_denied(
        c.create_container(ctx(), &app_request(APP_IMAGE, &app_spec()))
            .await,
        "CreateContainerRequest",
        "sandbox is not created yet",
    );
}

#[tokio::test]
async fn no_tee_mode_accepts_initdata_and_says_so() {
    let agent = Agent::start(&[]);
    let c = agent.client().await;
    let policy = generated_policy(POD);
    let r = create_sandbox(&c, &policy).await.unwrap();
    assert!(!r.bound_to_tee);
    use sha2::Digest;
    assert_eq!(
        r.initdata_sha256,
        hex::encode(sha2::Sha256::digest(initdata(&policy)))
    );
    let d = c
        .get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap();
    assert!(d.sandbox_created);
    assert_eq!(d.policy_sha256, hex::encode(sha2::Sha256::digest(&policy)));
    // A decision taken under the unbound policy says so too.
    c.get_metrics(ctx(), &GetMetricsRequest::default())
        .await
        .unwrap();
    let log = agent.log();
    assert!(
        log.contains("initdata accepted WITHOUT a TEE binding"),
        "{log}"
    );
    let decision = log
        .lines()
        .find(|l| l.contains("policy decision") && l.contains("GetMetricsRequest"))
        .unwrap();
    assert!(
        decision.contains("NO TEE: initdata not bound to hardware, development only"),
        "{decision}"
    );
}

#[tokio::test]
async fn a_sim_tee_whose_chip_is_unreachable_refuses_initdata() {
    // `--tee sim` as an ordinary process: no vsock, so no sim chip to ask for
    // HOST_DATA. The agent refuses rather than accepting initdata unbound.
    let agent = Agent::start(&["--tee", "sim"]);
    let c = agent.client().await;
    let (code, msg) = failure(create_sandbox(&c, ALLOW_ALL).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains("no HOST_DATA source"), "{msg}");
    // Still no sandbox: the built-in policy is in force.
    assert_denied(
        c.get_metrics(ctx(), &GetMetricsRequest::default()).await,
        "GetMetricsRequest",
        "",
    );
}

#[tokio::test]
async fn second_create_sandbox_is_refused_by_the_policy() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    assert_denied(
        create_sandbox(&c, ALLOW_ALL).await,
        "CreateSandboxRequest",
        "accepted once",
    );
}

#[tokio::test]
async fn second_create_sandbox_is_refused_even_when_the_policy_allows_it() {
    let agent = Agent::start(&[]);
    let c = agent.client().await;
    create_sandbox(&c, ALLOW_ALL).await.unwrap();
    let (code, msg) = failure(create_sandbox(&c, ALLOW_ALL).await);
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS, "{msg}");
    assert!(msg.contains("accepted once"), "{msg}");
}

#[tokio::test]
async fn malformed_initdata_is_refused_and_leaves_no_sandbox() {
    let agent = Agent::start(&[]);
    let c = agent.client().await;
    let r = c
        .create_sandbox(
            ctx(),
            &CreateSandboxRequest {
                initdata: "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n".into(),
                ..Default::default()
            },
        )
        .await;
    let (code, msg) = failure(r);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
    assert!(msg.contains("algorithm"), "{msg}");
    // The refused document did not use up the one CreateSandbox.
    create_sandbox(&c, ALLOW_ALL).await.unwrap();
}

#[tokio::test]
async fn exec_into_a_container_is_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let r = c
        .exec_process(
            ctx(),
            &ExecProcessRequest {
                container_id: "c1".into(),
                exec_id: "e1".into(),
                process: protobuf::MessageField::some(Process {
                    args: vec!["sh".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
    assert_denied(r, "ExecProcessRequest", "");
}

#[tokio::test]
async fn container_with_another_image_is_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let r = c
        .create_container(
            ctx(),
            &app_request("registry.example/evil@sha256:00", &app_spec()),
        )
        .await;
    assert_denied(
        r,
        "CreateContainerRequest",
        "image: expected registry.example/web/app@sha256:",
    );
}

#[tokio::test]
async fn container_with_a_host_bind_mount_is_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let mut spec = app_spec();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "rw"]}
        ));
    let r = c
        .create_container(ctx(), &app_request(APP_IMAGE, &spec))
        .await;
    assert_denied(r, "CreateContainerRequest", "oci_spec.mounts");
}

#[tokio::test]
async fn privileged_container_is_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let mut spec = app_spec();
    for k in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][k] =
            serde_json::json!(["CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"]);
    }
    let r = c
        .create_container(ctx(), &app_request(APP_IMAGE, &spec))
        .await;
    assert_denied(r, "CreateContainerRequest", "capabilities");
}

#[tokio::test]
async fn unparsable_spec_is_denied_by_the_policy() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let mut r = app_request(APP_IMAGE, &app_spec());
    r.oci_spec = b"{\"process\": ".to_vec();
    assert_denied(
        c.create_container(ctx(), &r).await,
        "CreateContainerRequest",
        "oci_spec: expected the OCI runtime spec",
    );
}

#[tokio::test]
async fn the_policys_container_passes_the_policy() {
    // The one request the pod needs gets past the policy to the runtime.
    let (a, c) = sandbox_with_generated_policy(&[]).await;
    let (code, msg) = failure(
        c.create_container(ctx(), &app_request(APP_IMAGE, &app_spec()))
            .await,
    );
    assert_ne!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(
        a.log()
            .contains("decision=\"allow\" rule=\"CreateContainerRequest\""),
        "{}",
        a.log()
    );
}

#[tokio::test]
async fn reading_stdout_of_an_unknown_container_is_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let r = c
        .read_stdout(
            ctx(),
            &ReadStdoutRequest {
                container_id: "c1".into(),
                max_len: 10,
                ..Default::default()
            },
        )
        .await;
    assert_denied(r, "ReadStdoutRequest", "not a container of this pod");
}

#[tokio::test]
async fn unknown_container_ids_are_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    assert_denied(
        c.start_container(
            ctx(),
            &StartContainerRequest {
                container_id: "ghost".into(),
                ..Default::default()
            },
        )
        .await,
        "StartContainerRequest",
        "not a container of this pod",
    );
    assert_denied(
        c.signal_process(
            ctx(),
            &SignalProcessRequest {
                container_id: "ghost".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await,
        "SignalProcessRequest",
        "not a container of this pod",
    );
    assert_denied(
        c.remove_container(
            ctx(),
            &RemoveContainerRequest {
                container_id: "ghost".into(),
                ..Default::default()
            },
        )
        .await,
        "RemoveContainerRequest",
        "not a container of this pod",
    );
}

#[tokio::test]
async fn set_policy_is_denied_and_the_policy_stays() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let before = c
        .get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap()
        .policy_sha256;
    assert_denied(
        c.set_policy(
            ctx(),
            &SetPolicyRequest {
                policy: ALLOW_ALL.into(),
                ..Default::default()
            },
        )
        .await,
        "SetPolicyRequest",
        "SetPolicy is not allowed",
    );
    let after = c
        .get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap()
        .policy_sha256;
    assert_eq!(before, after);
}

#[tokio::test]
async fn set_policy_works_when_the_policy_allows_it() {
    let agent = Agent::start(&[]);
    let c = agent.client().await;
    create_sandbox(&c, ALLOW_ALL).await.unwrap();
    let strict = "package agent_policy\nGetGuestDetailsRequest := true\n";
    c.set_policy(
        ctx(),
        &SetPolicyRequest {
            policy: strict.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_denied(
        c.get_metrics(ctx(), &GetMetricsRequest::default()).await,
        "GetMetricsRequest",
        "does not define GetMetricsRequest",
    );
    // And now SetPolicy itself is undefined, so denied.
    assert_denied(
        c.set_policy(
            ctx(),
            &SetPolicyRequest {
                policy: ALLOW_ALL.into(),
                ..Default::default()
            },
        )
        .await,
        "SetPolicyRequest",
        "",
    );
}

#[tokio::test]
async fn oversized_ids_are_denied() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    let mut r = app_request(APP_IMAGE, &app_spec());
    r.container_id = "x".repeat(512 * 1024);
    assert_denied(
        c.create_container(ctx(), &r).await,
        "CreateContainerRequest",
        "container_id",
    );
}

#[tokio::test]
async fn oversized_ids_are_refused_by_the_agent_even_under_allow_all() {
    let agent = Agent::start(&[]);
    let c = agent.client().await;
    create_sandbox(&c, ALLOW_ALL).await.unwrap();
    let mut r = app_request(APP_IMAGE, &app_spec());
    r.container_id = "x".repeat(512 * 1024);
    let (code, msg) = failure(c.create_container(ctx(), &r).await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    let (code, _) = failure(
        c.start_container(
            ctx(),
            &StartContainerRequest {
                container_id: "ghost".into(),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
}

#[tokio::test]
async fn decisions_are_counted_in_metrics() {
    let (_a, c) = sandbox_with_generated_policy(&[]).await;
    for _ in 0..2 {
        let _ = c.exec_process(ctx(), &ExecProcessRequest::default()).await;
    }
    let m = c
        .get_metrics(ctx(), &GetMetricsRequest::default())
        .await
        .unwrap()
        .text;
    assert!(
        m.contains(r#"cloister_agent_policy_decisions_total{request="ExecProcessRequest",decision="deny"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"cloister_agent_policy_decisions_total{request="CreateSandboxRequest",decision="allow"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn json_denial_log_lines_explain_the_field() {
    let (a, c) = sandbox_with_generated_policy(&["--log-format", "json"]).await;
    let mut spec = app_spec();
    spec["process"]["user"]["uid"] = serde_json::json!(0);
    let _ = c
        .create_container(ctx(), &app_request(APP_IMAGE, &spec))
        .await;
    let log = a.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"decision\":\"deny\"") && l.contains("CreateContainerRequest"))
        .unwrap_or_else(|| panic!("no denial line in {log}"));
    let mut policy = cloister_policy::Policy::new(&generated_policy(POD), None).unwrap();
    let e = cloister_policy::explain::explain(line, Some(&mut policy)).unwrap();
    assert_eq!(e.rule, "CreateContainerRequest");
    assert_eq!(e.mismatches.len(), 1, "{e}");
    assert_eq!(e.mismatches[0].field, "oci_spec.process.user.uid");
    assert_eq!(e.mismatches[0].expected, serde_json::json!(1000));
    assert_eq!(e.mismatches[0].received, serde_json::json!(0));
}

/// Sends one raw ttrpc request frame and returns the response's status.
fn raw_call(sock: &std::path::Path, method: &str, payload: Vec<u8>) -> ttrpc::Response {
    let req = ttrpc::Request {
        service: "cloister.agent.v1.Agent".into(),
        method: method.into(),
        payload,
        timeout_nano: 5_000_000_000,
        ..Default::default()
    };
    let body = req.write_to_bytes().unwrap();
    let mut frame = Vec::new();
    frame.extend((body.len() as u32).to_be_bytes());
    frame.extend(1u32.to_be_bytes());
    frame.push(ttrpc::proto::MESSAGE_TYPE_REQUEST);
    frame.push(0);
    frame.extend(body);
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame).unwrap();
    let mut header = [0u8; 10];
    s.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    assert_eq!(header[8], ttrpc::proto::MESSAGE_TYPE_RESPONSE);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    ttrpc::Response::parse_from_bytes(&body).unwrap()
}

#[tokio::test]
async fn malformed_protobuf_is_rejected_and_the_agent_keeps_serving() {
    let (a, c) = sandbox_with_generated_policy(&[]).await;
    for (method, junk) in [
        (
            "CreateContainer",
            vec![
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
        // Field 1 (container_id) claiming 1 GiB.
        (
            "StartContainer",
            vec![0x0a, 0x80, 0x80, 0x80, 0x80, 0x04, b'a'],
        ),
        // Invalid UTF-8 in a string field.
        ("ExecProcess", vec![0x0a, 0x02, 0xc3, 0x28]),
    ] {
        let resp = raw_call(&a.sock, method, junk);
        let st = resp.status.into_option().expect("a status");
        assert_ne!(st.code(), ttrpc::Code::OK, "{method}");
        assert_ne!(
            st.code(),
            ttrpc::Code::PERMISSION_DENIED,
            "{method}: decoding fails before the policy"
        );
    }
    // Still alive and still enforcing.
    c.get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap();
    assert_denied(
        c.exec_process(ctx(), &ExecProcessRequest::default()).await,
        "ExecProcessRequest",
        "",
    );
}
