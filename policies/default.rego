# The base a real deployment starts from.
#
# Allowed: the lifecycle of the containers listed in `data.containers` (a
# JSON data document, e.g. initdata "policy-data.json"):
#
#   {"containers": [{"name": "app", "image": "registry/app@sha256:…"}]}
#
# A container may be created only under a listed name with exactly the
# listed image, without hooks, host namespaces, extra devices or privileged
# capabilities, and with bind mounts only from the agent's sandbox dir.
# Denied: exec into containers, and SetPolicy. Everything not listed here is
# undefined, and so denied.
#
# For exactness (args, env, every mount, user, sysctls), generate a policy
# from the pod manifest instead: `cloister policy generate pod.yaml`.
package agent_policy

default HealthCheckRequest := true

default GetGuestDetailsRequest := true

default GetMetricsRequest := true

default DestroySandboxRequest := true

default CreateSandboxRequest := false

default SetPolicyRequest := false

default ExecProcessRequest := false

default CreateContainerRequest := false

id_pattern := `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`

# containerd's default capability set; nothing beyond it.
default_caps := {
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
	"CAP_SYS_CHROOT",
}

listed := c if {
	name := input.oci_spec.annotations["io.kubernetes.cri.container-name"]
	some c in data.containers
	c.name == name
}

CreateContainerRequest if {
	regex.match(id_pattern, input.container_id)
	not input.state.containers[input.container_id]
	input.image == listed.image
	count(violations) == 0
}

violations contains "oci_spec.hooks are not allowed" if {
	count(object.get(input.oci_spec, "hooks", {})) > 0
}

violations contains sprintf("capability %s is not in the default set", [cap]) if {
	some kind in ["bounding", "effective", "permitted", "inheritable", "ambient"]
	some cap in object.get(input.oci_spec, ["process", "capabilities", kind], [])
	not cap in default_caps
}

violations contains sprintf("namespace %s joins an existing namespace (%s)", [ns.type, ns.path]) if {
	some ns in object.get(input.oci_spec, ["linux", "namespaces"], [])
	object.get(ns, "path", "") != ""
}

violations contains sprintf("namespace %s is missing (host namespace)", [t]) if {
	some t in ["ipc", "mount", "network", "pid", "uts"]
	not t in {ns.type | some ns in object.get(input.oci_spec, ["linux", "namespaces"], [])}
}

violations contains "oci_spec.linux.devices must be empty" if {
	count(object.get(input.oci_spec, ["linux", "devices"], [])) > 0
}

violations contains sprintf("bind mount of %s from outside /run/cloister/sandbox", [m.source]) if {
	some m in object.get(input.oci_spec, "mounts", [])
	object.get(m, "type", "") == "bind"
	not regex.match(`^/run/cloister/sandbox/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`, object.get(m, "source", ""))
}

violations contains sprintf("bind mount source %s contains ..", [m.source]) if {
	some m in object.get(input.oci_spec, "mounts", [])
	contains(object.get(m, "source", ""), "..")
}

violations contains sprintf("%s must be mounted read-only", [m.destination]) if {
	some m in object.get(input.oci_spec, "mounts", [])
	m.destination in {"/sys", "/sys/fs/cgroup"}
	opts := object.get(m, "options", [])
	not "ro" in opts
}

violations contains sprintf("%s must be mounted read-only", [m.destination]) if {
	some m in object.get(input.oci_spec, "mounts", [])
	m.destination in {"/sys", "/sys/fs/cgroup"}
	"rw" in object.get(m, "options", [])
}

known_container if input.state.containers[input.container_id]

known_process if {
	input.exec_id == ""
	known_container
}

known_process if {
	input.exec_id != ""
	input.exec_id in input.state.containers[input.container_id].execs
}

StartContainerRequest if known_container

RemoveContainerRequest if known_container

StatsContainerRequest if known_container

SignalProcessRequest if known_process

WaitProcessRequest if known_process

WriteStdinRequest if known_process

CloseStdinRequest if known_process

TtyWinResizeRequest if known_process

ReadStdoutRequest if known_process

ReadStderrRequest if known_process

# ---------------------------------------------------------------- network
# The pod interface and routes the host's CNI chose. The host controls the
# pod's network anyway (traffic is protected by TLS, not by the network);
# these rules keep the requests to one interface's worth of IPv4.

ipv4_pattern := `^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$`

UpdateInterfaceRequest if {
	count(input.interface.addresses) <= 4
	every a in input.interface.addresses {
		regex.match(ipv4_pattern, a.address)
	}
}

UpdateRoutesRequest if count(input.routes) <= 32

# ------------------------------------------------------------------ files
# What the runtime copies into the sandbox directory: exactly the places the
# standard mounts and pod volumes are bound from.

copy_path_pattern := `^(hosts|hostname|resolv\.conf|containers/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/termination-log|serviceaccount(/[A-Za-z0-9_.-]+)*|volumes/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)$`

CopyFileRequest if regex.match(copy_path_pattern, input.path)

reason contains sprintf("CopyFile: %q is not a file the runtime gives a pod (hosts, hostname, resolv.conf, termination logs, the service account, volumes)", [input.path]) if {
	input.state.request == "CopyFileRequest"
	not regex.match(copy_path_pattern, input.path)
}

reason contains msg if {
	input.state.request == "CreateContainerRequest"
	not listed
	msg := sprintf("container %v is not listed in data.containers", [object.get(input, ["oci_spec", "annotations", "io.kubernetes.cri.container-name"], null)])
}

reason contains msg if {
	input.state.request == "CreateContainerRequest"
	input.image != listed.image
	msg := sprintf("image: expected %s, got %s", [listed.image, input.image])
}

reason contains msg if {
	input.state.request == "CreateContainerRequest"
	some msg in violations
}

reason contains "exec is not allowed by the default policy" if input.state.request == "ExecProcessRequest"

reason contains "SetPolicy is not allowed by the default policy" if input.state.request == "SetPolicyRequest"

reason contains sprintf("container_id: %q is not a container of this pod", [input.container_id]) if {
	not input.state.request in {"CreateContainerRequest", "ExecProcessRequest", "SetPolicyRequest"}
	input.container_id
	not known_container
}
