// PeerTls: the certificates of the peer service's mutual TLS, read from the files named by
// `mesh.tls.{ca,cert,key}` (a mounted Kubernetes Secret). With them, the peer server requires
// and verifies a client certificate signed by the CA, and every client presents this node's
// certificate and verifies the server's; without them the peer service runs in plain text and
// twd logs a warning that the mesh is unauthenticated.
//
// Plain values; LoadPeerTls reads files once (no reload: a rotated Secret needs a restart).
#pragma once

#include <string>

#include "tw/common/config.h"
#include "tw/common/status.h"

namespace tw::mesh {

struct PeerTls {
  std::string ca_pem;    // PEM: the CA every peer's certificate chains to
  std::string cert_pem;  // PEM: this node's certificate chain
  std::string key_pem;   // PEM: its private key
  // Name the server certificate must carry ("" = the address dialled).
  std::string server_name;

  bool enabled() const { return !ca_pem.empty(); }
};

// Reads the three files of `config` (all set, or none: then a disabled PeerTls). Errors name
// the field and the path ("mesh.tls.cert: cannot read /etc/tw/tls/tls.crt: No such file...").
// REQUIRES: config passed config::Validate() (all or none).
StatusOr<PeerTls> LoadPeerTls(const config::MeshTlsConfig& config);

}  // namespace tw::mesh
