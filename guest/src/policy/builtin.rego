package agent_policy

# The agent's own policy until CreateSandbox loads the tenant's from
# initdata: only liveness, guest details and CreateSandbox itself.

HealthCheckRequest := true

GetGuestDetailsRequest := true

CreateSandboxRequest := true

reason := "the sandbox is not created yet: only HealthCheckRequest, GetGuestDetailsRequest and CreateSandboxRequest are allowed before CreateSandbox"
