//! `cloister policy …` as a policy author runs it: exit codes and output.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn eval_allows_with_exit_0_and_denies_with_exit_3() {
    let d = tempfile::tempdir().unwrap();
    let policy = repo().join("policies/examples/exec-allowlist.rego");
    let state = r#"{"containers": {"c1": {"name": "app", "execs": []}}}"#;
    let good = d.path().join("good.json");
    std::fs::write(
        &good,
        format!(r#"{{"container_id": "c1", "exec_id": "e1", "process": {{"args": ["/bin/date"], "env": [], "uid": 65534, "gid": 65534}}, "state": {state}}}"#),
    )
    .unwrap();
    let out = cloister(&[
        "policy",
        "eval",
        "--policy",
        s(&policy),
        "--request",
        "ExecProcessRequest",
        "--input",
        s(&good),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "allow\n");

    let bad = d.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(r#"{{"container_id": "c1", "exec_id": "e1", "process": {{"args": ["sh"], "env": [], "uid": 65534, "gid": 65534}}, "state": {state}}}"#),
    )
    .unwrap();
    let out = cloister(&[
        "policy",
        "eval",
        "--policy",
        s(&policy),
        "--request",
        "ExecProcessRequest",
        "--input",
        s(&bad),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("deny: ExecProcessRequest: process.args: expected"),
        "{text}"
    );
}

#[test]
fn test_reports_each_rule_and_fails_on_a_failing_one() {
    let p = repo().join("policies/default.rego");
    let t = repo().join("policies/default_test.rego");
    let out = cloister(&["policy", "test", s(&p), s(&t)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("PASS data.agent_policy_test.test_exec_is_denied"),
        "{text}"
    );

    let d = tempfile::tempdir().unwrap();
    let failing = d.path().join("f_test.rego");
    std::fs::write(
        &failing,
        "package agent_policy_test\nimport data.agent_policy\ntest_exec_allowed if agent_policy.ExecProcessRequest with input as {}\n",
    )
    .unwrap();
    let out = cloister(&["policy", "test", s(&p), s(&failing)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("FAIL data.agent_policy_test.test_exec_allowed"));
}

#[test]
fn generate_then_explain_a_denial_log_line() {
    let d = tempfile::tempdir().unwrap();
    let out_policy = d.path().join("pod.rego");
    let manifest = repo().join("policies/examples/web-pod.yaml");
    let out = cloister(&["policy", "generate", s(&manifest), "-o", s(&out_policy)]);
    assert!(out.status.success(), "{out:?}");
    // A denial as the agent logs it with --log-format json.
    let input = serde_json::json!({
        "container_id": "c1",
        "exec_id": "e1",
        "process": {"args": ["sh"], "env": [], "cwd": "/", "terminal": false, "uid": 1000, "gid": 1000},
        "state": {"request": "ExecProcessRequest", "containers": {"c1": {"name": "app", "execs": []}}}
    });
    let line = serde_json::json!({
        "timestamp": "2026-01-01T00:00:00Z", "level": "WARN",
        "fields": {"message": "policy decision", "decision": "deny", "rule": "ExecProcessRequest",
                   "reason": "whatever", "input": input.to_string()}
    });
    let log = d.path().join("agent.log");
    std::fs::write(
        &log,
        format!("{{\"fields\":{{\"message\":\"agent API ready\"}}}}\n{line}\n"),
    )
    .unwrap();
    let out = cloister(&["policy", "explain", "--policy", s(&out_policy), s(&log)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("denied: ExecProcessRequest"), "{text}");
    assert!(
        text.contains("- process.args") && text.contains("received: [\"sh\"]"),
        "{text}"
    );
}

#[test]
fn bench_prints_percentiles() {
    let out = cloister(&["policy", "bench", "--iterations", "20"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("CreateContainerRequest   allow p50"),
        "{text}"
    );
    assert!(text.contains("ExecProcessRequest       deny"), "{text}");
}
