package agent_policy_test

import data.agent_policy

containers := [{"name": "app", "image": "registry.example/app@sha256:aaaa"}]

good_spec := {
	"annotations": {"io.kubernetes.cri.container-name": "app"},
	"process": {"args": ["/app"], "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]}},
	"mounts": [
		{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
		{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "ro"]},
		{"destination": "/data", "type": "bind", "source": "/run/cloister/sandbox/volumes/data", "options": ["rbind"]},
	],
	"linux": {"namespaces": [{"type": "ipc"}, {"type": "mount"}, {"type": "network"}, {"type": "pid"}, {"type": "uts"}]},
}

create(spec, image) := {
	"container_id": "c1",
	"image": image,
	"oci_spec": spec,
	"state": {"request": "CreateContainerRequest", "containers": {}},
}

running := {"request": "StartContainerRequest", "containers": {"c1": {"name": "app", "execs": []}}}

test_listed_container_is_allowed if {
	agent_policy.CreateContainerRequest with input as create(good_spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_other_image_is_denied if {
	not agent_policy.CreateContainerRequest with input as create(good_spec, "registry.example/app@sha256:bbbb")
		with data.containers as containers
}

test_unlisted_name_is_denied if {
	spec := json.patch(good_spec, [{"op": "replace", "path": "/annotations/io.kubernetes.cri.container-name", "value": "miner"}])
	not agent_policy.CreateContainerRequest with input as create(spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_host_bind_mount_is_denied if {
	spec := json.patch(good_spec, [{"op": "add", "path": "/mounts/-", "value": {"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]}}])
	not agent_policy.CreateContainerRequest with input as create(spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_writable_sys_is_denied if {
	spec := json.patch(good_spec, [{"op": "replace", "path": "/mounts/1/options", "value": ["nosuid"]}])
	not agent_policy.CreateContainerRequest with input as create(spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_sys_admin_is_denied if {
	spec := json.patch(good_spec, [{"op": "add", "path": "/process/capabilities/bounding/-", "value": "CAP_SYS_ADMIN"}])
	not agent_policy.CreateContainerRequest with input as create(spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_host_network_is_denied if {
	spec := json.patch(good_spec, [{"op": "remove", "path": "/linux/namespaces/2"}])
	not agent_policy.CreateContainerRequest with input as create(spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_hooks_are_denied if {
	spec := json.patch(good_spec, [{"op": "add", "path": "/hooks", "value": {"prestart": [{"path": "/bin/sh"}]}}])
	not agent_policy.CreateContainerRequest with input as create(spec, "registry.example/app@sha256:aaaa")
		with data.containers as containers
}

test_lifecycle_of_a_known_container_is_allowed if {
	agent_policy.StartContainerRequest with input as {"container_id": "c1", "state": running}
	agent_policy.ReadStdoutRequest with input as {"container_id": "c1", "exec_id": "", "state": running}
	agent_policy.RemoveContainerRequest with input as {"container_id": "c1", "state": running}
}

test_unknown_container_is_denied if {
	not agent_policy.StartContainerRequest with input as {"container_id": "c2", "state": running}
}

test_exec_is_denied if {
	not agent_policy.ExecProcessRequest with input as {"container_id": "c1", "exec_id": "e1", "process": {"args": ["sh"]}, "state": running}
}

test_set_policy_is_denied if {
	not agent_policy.SetPolicyRequest with input as {"policy": "package agent_policy", "state": running}
}

test_reason_names_the_image if {
	r := agent_policy.reason with input as create(good_spec, "registry.example/app@sha256:bbbb")
		with data.containers as containers
	"image: expected registry.example/app@sha256:aaaa, got registry.example/app@sha256:bbbb" in r
}
