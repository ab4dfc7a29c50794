# ############################################################################
# ##                                                                        ##
# ##   ALLOW-ALL: DEVELOPMENT ONLY. NEVER DEPLOY THIS POLICY.               ##
# ##                                                                        ##
# ##   It lets the host do ANYTHING inside the guest: run any image with    ##
# ##   any mounts and capabilities, exec any command, read every output,    ##
# ##   and replace this policy. A confidential pod under this policy is     ##
# ##   not confidential at all.                                             ##
# ##                                                                        ##
# ############################################################################
package agent_policy

default HealthCheckRequest := true

default GetGuestDetailsRequest := true

default CreateSandboxRequest := true

default DestroySandboxRequest := true

default CreateContainerRequest := true

default StartContainerRequest := true

default RemoveContainerRequest := true

default ExecProcessRequest := true

default SignalProcessRequest := true

default WaitProcessRequest := true

default WriteStdinRequest := true

default ReadStdoutRequest := true

default ReadStderrRequest := true

default CloseStdinRequest := true

default TtyWinResizeRequest := true

default StatsContainerRequest := true

default GetMetricsRequest := true

default SetPolicyRequest := true

default UpdateInterfaceRequest := true

default UpdateRoutesRequest := true

default CopyFileRequest := true
