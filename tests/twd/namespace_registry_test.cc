// The namespace registry's file: what one twd records the next one loads; a torn tail is cut
// off, a corrupt record is skipped and counted, the cap bounds memory and file.
#include "namespace_registry.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tw::twd {
namespace {

Namespace Ns(int i) {
  Namespace n;
  n.model = "model-" + std::to_string(i);
  n.model_revision = "rev";
  n.tokenizer = "tok";
  n.kv_dtype = "bf16";
  n.kv_layout = "vllm/NHD/block16";
  n.parallel = "tp=0/1,pp=0/1";
  n.adapter = i % 2 ? "lora-" + std::to_string(i) : "";
  n.tenant = "team";
  n.chunk_tokens = "256";
  return n;
}

class NamespaceRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tw-nsregistry.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/twd.data.namespaces";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<NamespaceRegistry> Open(size_t cap = 100) {
    auto r = NamespaceRegistry::Open(path_, cap);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }
  void Add(NamespaceRegistry& r, int i) { r.Add(NamespaceDigest(Ns(i)), Ns(i)); }
  uint64_t FileSize() { return std::filesystem::file_size(path_); }
  std::string ReadFile() {
    std::ifstream in(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void WriteFile(const std::string& bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << bytes;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(NamespaceRegistryTest, RoundTripsAcrossReopen) {
  {
    auto r = Open();
    ASSERT_NE(r, nullptr);
    for (int i = 0; i < 5; ++i) Add(*r, i);
    Add(*r, 3);  // known already: not appended again
    EXPECT_EQ(r->size(), 5u);
  }
  auto r = Open();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->load_stats().loaded, 5u);
  EXPECT_EQ(r->load_stats().corrupt, 0u);
  EXPECT_EQ(r->load_stats().torn_bytes, 0u);
  for (int i = 0; i < 5; ++i) {
    auto f = r->Find(NamespaceDigest(Ns(i)));
    ASSERT_TRUE(f.has_value()) << i;
    EXPECT_EQ(*f, Ns(i));
  }
  EXPECT_FALSE(r->Find(NamespaceDigest(Ns(9))).has_value());
  uint64_t expected = 8;  // the magic, then each namespace once
  for (int i = 0; i < 5; ++i) expected += EncodeNamespaceRecord(Ns(i)).size();
  EXPECT_EQ(FileSize(), expected);
}

TEST_F(NamespaceRegistryTest, TornTailIsIgnoredAndCutOff) {
  {
    auto r = Open();
    for (int i = 0; i < 3; ++i) Add(*r, i);
  }
  const uint64_t whole = FileSize();
  // A crash in the middle of appending a fourth record.
  const std::string rec = EncodeNamespaceRecord(Ns(3));
  WriteFile(ReadFile() + rec.substr(0, rec.size() / 2));
  {
    auto r = Open();
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->load_stats().loaded, 3u);
    EXPECT_EQ(r->load_stats().torn_bytes, rec.size() / 2);
    EXPECT_EQ(FileSize(), whole);  // cut back to the last whole record
    Add(*r, 4);                    // appended after it, readable next time
  }
  auto r = Open();
  EXPECT_EQ(r->load_stats().loaded, 4u);
  EXPECT_EQ(r->load_stats().torn_bytes, 0u);
  EXPECT_TRUE(r->Find(NamespaceDigest(Ns(4))).has_value());
  EXPECT_FALSE(r->Find(NamespaceDigest(Ns(3))).has_value());
}

TEST_F(NamespaceRegistryTest, CorruptRecordIsSkippedAndCounted) {
  {
    auto r = Open();
    for (int i = 0; i < 3; ++i) Add(*r, i);
  }
  // Flip a byte inside the second record's payload (past the magic, the first record and
  // the second's checksum and length).
  std::string bytes = ReadFile();
  const size_t rec = EncodeNamespaceRecord(Ns(0)).size();
  ASSERT_EQ(rec, EncodeNamespaceRecord(Ns(1)).size() - std::string("lora-1").size());
  bytes[8 + rec + 8 + 6] ^= 0x40;  // inside "model-1"
  WriteFile(bytes);
  auto r = Open();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->load_stats().corrupt, 1u);
  EXPECT_EQ(r->load_stats().loaded, 2u);
  EXPECT_TRUE(r->Find(NamespaceDigest(Ns(0))).has_value());
  EXPECT_FALSE(r->Find(NamespaceDigest(Ns(1))).has_value());
  EXPECT_TRUE(r->Find(NamespaceDigest(Ns(2))).has_value());
}

TEST_F(NamespaceRegistryTest, CapBoundsMemoryAndFile) {
  {
    auto r = Open(/*cap=*/3);
    for (int i = 0; i < 10; ++i) Add(*r, i);
    EXPECT_EQ(r->size(), 3u);
    EXPECT_FALSE(r->Find(NamespaceDigest(Ns(5))).has_value());
  }
  const uint64_t size = FileSize();
  {
    auto r = Open(/*cap=*/3);
    EXPECT_EQ(r->load_stats().loaded, 3u);
    EXPECT_EQ(r->load_stats().over_cap, 0u);
  }
  EXPECT_EQ(FileSize(), size);  // nothing past the cap was appended
  // A smaller cap than the file holds: the records past it are ignored.
  auto r = Open(/*cap=*/2);
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ(r->load_stats().over_cap, 1u);
}

TEST_F(NamespaceRegistryTest, ForeignFileIsRefusedAndLeftAlone) {
  WriteFile("not a registry at all");
  auto r = NamespaceRegistry::Open(path_, 10);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFile(), "not a registry at all");
}

TEST_F(NamespaceRegistryTest, InMemoryWithoutAPath) {
  auto r = NamespaceRegistry::Open("", 10);
  ASSERT_TRUE(r.ok());
  (*r)->Add(NamespaceDigest(Ns(1)), Ns(1));
  EXPECT_TRUE((*r)->Find(NamespaceDigest(Ns(1))).has_value());
  EXPECT_FALSE(std::filesystem::exists(path_));
}

}  // namespace
}  // namespace tw::twd
