//go:build tools

// Names the command scripts/csi-sanity.sh builds, so that go.mod and go.sum hold every module
// it needs. The file is never compiled (the tools build tag is never set).
package tools

import (
	_ "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity"
)
