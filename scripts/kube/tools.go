//go:build tools

// Names the commands scripts/kube-binaries.sh builds, so that go.mod and go.sum hold every
// module they need. The file is never compiled (the tools build tag is never set).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
