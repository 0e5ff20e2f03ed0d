// Starts a TomeServer on a fresh data directory with a tiny random model, and gives stubs
// over an in-process channel.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/services/server.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"

namespace tome::testing {

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = dir_.Sub("model");
    WriteModel(TinyConfig(), model_dir_, 3);
    StartServer();
  }
  void TearDown() override { server_.reset(); }

  services::ServerOptions Options() {
    services::ServerOptions options;
    options.model_dir = model_dir_;
    options.data_dir = dir_.Sub("data");
    options.listen_address = "127.0.0.1:0";
    options.sync_writes = false;
    options.checkpoint_tokens = 256;
    options.max_document_bytes = 1 << 20;
    return options;
  }
  void StartServer() { StartServer(Options()); }
  void StartServer(const services::ServerOptions& options) {
    server_.reset();
    auto server = services::TomeServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    admin_key_ = services::ReadCredential(server_->credentials_path(), "TOME_ADMIN_KEY");
    api_key_ = services::ReadCredential(server_->credentials_path(), "TOME_API_KEY");
    channel_ = server_->InProcessChannel(api_key_);
    documents_ = v1::DocumentService::NewStub(channel_);
    queries_ = v1::QueryService::NewStub(channel_);
  }

  // Creates a document, appends `text`, waits until READY; returns its id.
  std::string Ingest(const std::string& text);
  // Creates a document and appends `text` without waiting; returns its id.
  std::string StartIngest(const std::string& text);
  // Follows WatchIngestion to its end; returns the last progress message.
  v1::IngestionProgress WaitIngestion(const std::string& id);
  grpc::Status Append(const std::string& id, const std::string& text,
                      v1::AppendTextResponse* response = nullptr);
  // Runs Ask to completion; returns the status; fills the concatenated deltas and summary.
  grpc::Status Ask(const std::string& id, const std::string& question, std::string* deltas,
                   v1::AskSummary* summary, int max_tokens = 16);
  v1::Document Get(const std::string& id);

  TempDir dir_;
  std::string model_dir_;
  std::unique_ptr<services::TomeServer> server_;
  std::string admin_key_;  // from the server's bootstrap credentials
  std::string api_key_;    // tenant 1 ("default")
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DocumentService::Stub> documents_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
};

}  // namespace tome::testing
