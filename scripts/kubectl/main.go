// kubectl, built from the Kubernetes release pinned in go.mod: the same program as
// k8s.io/kubernetes/cmd/kubectl (whose main is these lines), for the machines whose kubectl is
// too old for the tests. scripts/kubectl.sh builds it; nothing else uses this module.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// The client auth plugins, as in the released kubectl.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
