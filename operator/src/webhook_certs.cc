#include "tw/operator/webhook_certs.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>

#include "tw/common/strings.h"

namespace tw::op {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

Status SslError(std::string_view what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return InternalError(StrCat(what, ": ", buf));
}

bool IsIp(const std::string& host, unsigned char* out, int* len) {
  if (inet_pton(AF_INET, host.c_str(), out) == 1) {
    *len = 4;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), out) == 1) {
    *len = 16;
    return true;
  }
  return false;
}

StatusOr<PkeyPtr> NewKey() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return SslError("EC key generation");
  return key;
}

std::string Pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return SslError(StrCat("extension ", OBJ_nid2sn(nid), "=", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? OkStatus() : SslError("X509_add_ext");
}

StatusOr<X509Ptr> NewCert(const std::string& cn, EVP_PKEY* key, SystemTime now,
                          std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  if (!cert) return SslError("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return SslError("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  const time_t t = std::chrono::system_clock::to_time_t(now);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), t - 60);
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), t + validity.count());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("tokenwarehouse.io"), -1, -1,
                             0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

SystemTime AsnTime(const ASN1_TIME* t) {
  struct tm tm {};
  ASN1_TIME_to_tm(t, &tm);
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::vector<X509Ptr> ReadCerts(const std::string& pem) {
  std::vector<X509Ptr> out;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(c);
  ERR_clear_error();  // the end of the input reads as an error
  return out;
}

}  // namespace

StatusOr<ServingCert> GenerateServingCert(const std::vector<std::string>& hosts, SystemTime now,
                                          std::chrono::seconds validity) {
  if (hosts.empty()) return InvalidArgumentError("webhook certificate: no host names");
  if (validity < std::chrono::seconds(10)) {
    return InvalidArgumentError("webhook certificate: validity under 10 s");
  }
  TW_ASSIGN_OR_RETURN(PkeyPtr ca_key, NewKey());
  TW_ASSIGN_OR_RETURN(X509Ptr ca, NewCert("tw-operator webhook CA", ca_key.get(), now, validity));
  X509_set_issuer_name(ca.get(), X509_get_subject_name(ca.get()));
  TW_RETURN_IF_ERROR(AddExt(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE"));
  TW_RETURN_IF_ERROR(AddExt(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  TW_RETURN_IF_ERROR(AddExt(ca.get(), ca.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(ca.get(), ca_key.get(), EVP_sha256()) == 0) return SslError("signing the CA");

  TW_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  TW_ASSIGN_OR_RETURN(X509Ptr cert, NewCert(hosts[0], key.get(), now, validity));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get()));
  std::string san;
  for (const auto& h : hosts) {
    unsigned char ip[16];
    int len = 0;
    StrAppend(&san, san.empty() ? "" : ",", IsIp(h, ip, &len) ? "IP:" : "DNS:", h);
  }
  TW_RETURN_IF_ERROR(AddExt(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE"));
  TW_RETURN_IF_ERROR(
      AddExt(cert.get(), ca.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment"));
  TW_RETURN_IF_ERROR(AddExt(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth"));
  TW_RETURN_IF_ERROR(AddExt(cert.get(), ca.get(), NID_subject_alt_name, san));
  TW_RETURN_IF_ERROR(AddExt(cert.get(), ca.get(), NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) {
    return SslError("signing the serving certificate");
  }
  return ServingCert{Pem(ca.get()), Pem(cert.get()), KeyPem(key.get())};
}

StatusOr<CertInfo> InspectCert(const std::string& pem) {
  auto certs = ReadCerts(pem);
  if (certs.empty()) return InvalidArgumentError("no PEM certificate");
  X509* c = certs[0].get();
  CertInfo info;
  info.not_before = AsnTime(X509_get0_notBefore(c));
  info.not_after = AsnTime(X509_get0_notAfter(c));
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) {
      const ASN1_IA5STRING* s = n->d.dNSName;
      info.hosts.emplace_back(reinterpret_cast<const char*>(s->data), s->length);
    } else if (n->type == GEN_IPADD) {
      char buf[INET6_ADDRSTRLEN] = {};
      const ASN1_OCTET_STRING* s = n->d.iPAddress;
      inet_ntop(s->length == 4 ? AF_INET : AF_INET6, s->data, buf, sizeof buf);
      info.hosts.emplace_back(buf);
    }
  }
  GENERAL_NAMES_free(names);
  return info;
}

Status VerifyServingCert(const ServingCert& sc, const std::string& host, SystemTime now) {
  auto certs = ReadCerts(sc.cert_pem);
  if (certs.empty()) return InvalidArgumentError("tls.crt: no PEM certificate");
  BioPtr bio(BIO_new_mem_buf(sc.key_pem.data(), static_cast<int>(sc.key_pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return InvalidArgumentError("tls.key: no PEM private key");
  }
  if (X509_check_private_key(certs[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("tls.key does not belong to tls.crt");
  }
  auto cas = ReadCerts(sc.ca_pem);
  if (cas.empty()) return InvalidArgumentError("ca.crt: no PEM certificate");
  StorePtr store(X509_STORE_new());
  for (auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), certs[0].get(), nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, std::chrono::system_clock::to_time_t(now));
  unsigned char ip[16];
  int len = 0;
  if (IsIp(host, ip, &len)) {
    X509_VERIFY_PARAM_set1_ip(param, ip, static_cast<size_t>(len));
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  }
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return FailedPreconditionError(
        StrCat("tls.crt does not verify for ", host, ": ", X509_verify_cert_error_string(err)));
  }
  return OkStatus();
}

std::string RotationReason(const ServingCert& cert, const std::vector<std::string>& hosts,
                           SystemTime now) {
  auto info = InspectCert(cert.cert_pem);
  if (!info.ok()) return StrCat("unreadable certificate: ", info.status().message());
  for (const auto& h : hosts) {
    if (std::find(info->hosts.begin(), info->hosts.end(), h) == info->hosts.end()) {
      return StrCat("the certificate does not name ", h);
    }
    Status s = VerifyServingCert(cert, h, now);
    if (!s.ok()) return std::string(s.message());
  }
  auto lifetime = info->not_after - info->not_before;
  if (now >= info->not_before + lifetime * 2 / 3) return "two thirds of its lifetime are gone";
  return "";
}

std::string KeepUnexpired(const std::string& bundle_pem, SystemTime now) {
  std::string out;
  for (auto& c : ReadCerts(bundle_pem)) {
    if (AsnTime(X509_get0_notAfter(c.get())) > now) out += Pem(c.get());
  }
  return out;
}

}  // namespace tw::op
