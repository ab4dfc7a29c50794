package agent_policy_test

import data.agent_policy

# Every request of the API, so that a new RPC cannot be forgotten here.
requests := [
	"HealthCheckRequest", "GetGuestDetailsRequest", "CreateSandboxRequest",
	"DestroySandboxRequest", "CreateContainerRequest", "StartContainerRequest",
	"RemoveContainerRequest", "ExecProcessRequest", "SignalProcessRequest",
	"WaitProcessRequest", "WriteStdinRequest", "ReadStdoutRequest",
	"ReadStderrRequest", "CloseStdinRequest", "TtyWinResizeRequest",
	"StatsContainerRequest", "GetMetricsRequest", "SetPolicyRequest",
]

test_every_request_is_allowed if {
	every r in requests {
		agent_policy[r] == true with input as {}
	}
}

test_exec_of_anything_is_allowed if {
	agent_policy.ExecProcessRequest with input as {"process": {"args": ["sh", "-c", "cat /etc/shadow"]}}
}
