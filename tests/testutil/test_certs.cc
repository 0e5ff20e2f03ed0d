#include "tests/testutil/test_certs.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <memory>

#include "gtest/gtest.h"

namespace tome::testing {
namespace {

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter>;
using Cert = std::unique_ptr<X509, Deleter>;

Key NewKey() { return Key(EVP_EC_gen("P-256")); }

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  EXPECT_NE(ext, nullptr) << value;
  if (ext == nullptr) return;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `cn`, signed by `issuer_key` (self-signed when issuer is null).
Cert NewCert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool ca,
             const char* san, long serial) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* issuer_or_self = issuer ? issuer : cert.get();
  if (ca) {
    AddExtension(cert.get(), issuer_or_self, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert.get(), issuer_or_self, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert.get(), issuer_or_self, NID_basic_constraints, "critical,CA:FALSE");
    AddExtension(cert.get(), issuer_or_self, NID_ext_key_usage, "serverAuth,clientAuth");
    if (san) AddExtension(cert.get(), issuer_or_self, NID_subject_alt_name, san);
  }
  EXPECT_GT(X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()), 0);
  return cert;
}

std::string Pem(X509* cert) {
  std::unique_ptr<BIO, Deleter> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

std::string Pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, Deleter> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

}  // namespace

TestPki MakeTestPki() {
  TestPki pki;
  Key ca_key = NewKey();
  Cert ca = NewCert(ca_key.get(), "Tome test CA", nullptr, nullptr, true, nullptr, 1);
  Key server_key = NewKey();
  Cert server = NewCert(server_key.get(), "localhost", ca.get(), ca_key.get(), false,
                        "DNS:localhost,IP:127.0.0.1", 2);
  Key client_key = NewKey();
  Cert client = NewCert(client_key.get(), "tome client", ca.get(), ca_key.get(), false, nullptr, 3);
  Key other_ca_key = NewKey();
  Cert other_ca = NewCert(other_ca_key.get(), "Stranger CA", nullptr, nullptr, true, nullptr, 4);
  Key stranger_key = NewKey();
  Cert stranger = NewCert(stranger_key.get(), "stranger", other_ca.get(), other_ca_key.get(),
                          false, nullptr, 5);
  pki.ca_cert = Pem(ca.get());
  pki.server_cert = Pem(server.get());
  pki.server_key = Pem(server_key.get());
  pki.client_cert = Pem(client.get());
  pki.client_key = Pem(client_key.get());
  pki.stranger_ca_cert = Pem(other_ca.get());
  pki.stranger_cert = Pem(stranger.get());
  pki.stranger_key = Pem(stranger_key.get());
  return pki;
}

void WriteTestPki(const TestPki& pki, const std::string& dir) {
  const std::pair<const char*, const std::string*> files[] = {
      {"ca.pem", &pki.ca_cert},         {"server.pem", &pki.server_cert},
      {"server.key", &pki.server_key},  {"client.pem", &pki.client_cert},
      {"client.key", &pki.client_key},  {"stranger.pem", &pki.stranger_cert},
      {"stranger.key", &pki.stranger_key}};
  for (const auto& [name, pem] : files) {
    std::ofstream(dir + "/" + name, std::ios::binary) << *pem;
  }
}

}  // namespace tome::testing
