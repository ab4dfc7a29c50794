# Example: the default policy's idea of container lifecycle, plus a short
# list of exec commands the operator may run (e.g. for kubectl exec based
# health checks), matched exactly: command, arguments, and no environment.
#
# The exec'd process must run as the uid/gid listed for the container in
# `data.exec_users` (default 65534:65534, nobody).
package agent_policy

default HealthCheckRequest := true

default GetGuestDetailsRequest := true

default GetMetricsRequest := true

default ExecProcessRequest := false

default SetPolicyRequest := false

allowed_commands := [
	["cat", "/tmp/healthy"],
	["/bin/date"],
]

known_container if input.state.containers[input.container_id]

exec_user := u if {
	name := input.state.containers[input.container_id].name
	u := data.exec_users[name]
} else := {"uid": 65534, "gid": 65534}

ExecProcessRequest if {
	known_container
	regex.match(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`, input.exec_id)
	not input.exec_id in input.state.containers[input.container_id].execs
	input.process.args in allowed_commands
	count(input.process.env) == 0
	input.process.uid == exec_user.uid
	input.process.gid == exec_user.gid
}

WaitProcessRequest if known_container

ReadStdoutRequest if known_container

ReadStderrRequest if known_container

reason contains msg if {
	input.state.request == "ExecProcessRequest"
	not input.process.args in allowed_commands
	msg := sprintf("process.args: expected one of %v, got %v", [allowed_commands, input.process.args])
}

reason contains msg if {
	input.state.request == "ExecProcessRequest"
	count(input.process.env) > 0
	msg := sprintf("process.env: expected [], got %v", [input.process.env])
}
