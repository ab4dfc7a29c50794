package agent_policy_test

import data.agent_policy

app_image := "registry.example/web/app@sha256:4c3f2a1e5d6b7c8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382"

running := {"request": "ExecProcessRequest", "containers": {
	"c1": {"name": "app", "execs": []},
	"c2": {"name": "sidecar", "execs": []},
}}

exec(container, args) := {
	"container_id": container,
	"exec_id": "e1",
	"process": {"args": args, "env": [], "cwd": "/", "terminal": false, "uid": 1000, "gid": 1000},
	"state": running,
}

test_annotated_exec_in_sidecar_is_allowed if {
	agent_policy.ExecProcessRequest with input as exec("c2", ["sh", "-c", "echo ok"])
}

test_probe_exec_in_sidecar_is_allowed if {
	agent_policy.ExecProcessRequest with input as exec("c2", ["cat", "/tmp/ready"])
}

test_exec_in_app_is_denied if {
	not agent_policy.ExecProcessRequest with input as exec("c1", ["sh", "-c", "echo ok"])
}

test_exec_with_other_args_is_denied if {
	not agent_policy.ExecProcessRequest with input as exec("c2", ["sh", "-c", "id"])
}

test_exec_reason_names_the_field if {
	r := agent_policy.reason with input as exec("c1", ["sh"])
	some msg in r
	startswith(msg, "process.args: expected [], got [\"sh\"]")
}

test_unknown_image_is_denied if {
	not agent_policy.CreateContainerRequest with input as {
		"container_id": "c9",
		"image": "registry.example/web/app:latest",
		"oci_spec": {"annotations": {"io.kubernetes.cri.container-name": "app"}, "process": {"args": ["/usr/bin/app", "--port", "8080", "--data", "/data"]}},
		"state": {"request": "CreateContainerRequest", "containers": {}},
	}
}

test_set_policy_is_denied if {
	not agent_policy.SetPolicyRequest with input as {"policy": "", "data_json": "", "state": running}
}

test_logs_are_readable if {
	agent_policy.ReadStdoutRequest with input as {"container_id": "c1", "exec_id": "", "max_len": 10, "state": running}
}
