package agent_policy_test

import data.agent_policy

state := {"request": "ExecProcessRequest", "containers": {"c1": {"name": "app", "execs": ["e0"]}}}

exec(args, id) := {
	"container_id": "c1",
	"exec_id": id,
	"process": {"args": args, "env": [], "uid": 65534, "gid": 65534},
	"state": state,
}

test_listed_command_is_allowed if {
	agent_policy.ExecProcessRequest with input as exec(["cat", "/tmp/healthy"], "e1")
}

test_other_arguments_are_denied if {
	not agent_policy.ExecProcessRequest with input as exec(["cat", "/etc/shadow"], "e1")
}

test_shell_is_denied if {
	not agent_policy.ExecProcessRequest with input as exec(["sh"], "e1")
}

test_reused_exec_id_is_denied if {
	not agent_policy.ExecProcessRequest with input as exec(["/bin/date"], "e0")
}

test_environment_is_denied if {
	i := json.patch(exec(["/bin/date"], "e1"), [{"op": "replace", "path": "/process/env", "value": ["LD_PRELOAD=/x.so"]}])
	not agent_policy.ExecProcessRequest with input as i
}

test_root_is_denied if {
	i := json.patch(exec(["/bin/date"], "e1"), [{"op": "replace", "path": "/process/uid", "value": 0}])
	not agent_policy.ExecProcessRequest with input as i
}

test_per_container_user_from_data if {
	i := json.patch(exec(["/bin/date"], "e1"), [{"op": "replace", "path": "/process/uid", "value": 1000}, {"op": "replace", "path": "/process/gid", "value": 1000}])
	agent_policy.ExecProcessRequest with input as i with data.exec_users as {"app": {"uid": 1000, "gid": 1000}}
}

test_reason_lists_the_allowed_commands if {
	r := agent_policy.reason with input as exec(["sh"], "e1")
	count(r) == 1
}
