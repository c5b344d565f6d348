// Certificates of the admission webhook's HTTPS endpoint, with OpenSSL: a fresh self-signed
// CA and a serving certificate it signs (ECDSA P-256, SHA-256), inspection of a PEM
// certificate, and the rotation rule. The CA's private key is thrown away once the serving
// certificate is signed: a rotation makes a new CA, and the caBundle the API server trusts
// carries the new CA next to the previous one until that one expires, so that both serving
// certificates verify while replicas switch over.
//
// Pure functions (OpenSSL's thread-safe APIs only); times are passed in, so tests decide
// what "now" is.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tw/common/status.h"

namespace tw::op {

using SystemTime = std::chrono::system_clock::time_point;

struct ServingCert {
  std::string ca_pem;    // the CA bundle clients should trust (one or more certificates)
  std::string cert_pem;  // the serving certificate
  std::string key_pem;   // its private key (PKCS#8)
};

// A new CA and a serving certificate for `hosts` (DNS names; IP addresses become IP SANs),
// valid from `now` - 1 minute until `now` + `validity`. `ca_pem` holds only the new CA.
StatusOr<ServingCert> GenerateServingCert(const std::vector<std::string>& hosts, SystemTime now,
                                          std::chrono::seconds validity);

struct CertInfo {
  SystemTime not_before;
  SystemTime not_after;
  std::vector<std::string> hosts;  // DNS and IP SANs
};
// The first certificate of `pem`.
StatusOr<CertInfo> InspectCert(const std::string& pem);

// OK when `cert_pem` and `key_pem` belong together and the certificate chains to one of the
// certificates in `ca_pem` at time `now` and names `host` (a DNS name or an IP address).
Status VerifyServingCert(const ServingCert& cert, const std::string& host, SystemTime now);

// Why `cert` must be replaced at `now`, or "" when it may stay: unparsable, key mismatch, a
// host of `hosts` not covered, or two thirds of its lifetime gone.
std::string RotationReason(const ServingCert& cert, const std::vector<std::string>& hosts,
                           SystemTime now);

// The certificates of `bundle_pem` that are still valid at `now`, in order, as PEM.
std::string KeepUnexpired(const std::string& bundle_pem, SystemTime now);

}  // namespace tw::op
