// tome_selection_locality: which KV blocks a trained model's questions and answers select,
// against the same model shape with random weights, on held-out documents: the block-access
// pattern that storage-backed attention (BlockCache) serves.
//
//   /usr/bin/python3 tools/eval/locality_documents.py --lengths 32768 > /tmp/docs.jsonl
//   build/tests/bench/tome_selection_locality --documents=/tmp/docs.jsonl --answer_tokens=8
//
// For each document: prefill it once; for each question, a fork of it prefills the question
// and decodes greedily, recording every sparse layer's selection (PrefillOptions::
// capture_selection). Only data-dependent blocks count (not the forced first blocks and local
// window, which an on-demand session keeps resident). Per (layer, KV group, block):
//   per token:    blocks one query token selects;
//   per question: distinct blocks all question tokens select (what a cold question fetches);
//   per step:     of a decode step's blocks, the share its previous step (or the question)
//                 selected too, the share selected anywhere earlier in this question and
//                 answer, and the blocks never selected before (what a step must fetch when
//                 everything selected earlier is still cached), and the share of those new
//                 blocks next to (b - 1 or b + 1 of the same layer and group) a block
//                 selected earlier: what prefetching the neighbours of selected blocks
//                 would have brought in ahead of time.
// Key-value questions also report whether the needle line's block was read, per sparse layer,
// by the query that predicts the answer's first token and by any question token, for answers
// right and wrong (does a wrong answer miss the block, or not use it?).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "tome/engine/engine.h"
#include "tome/engine/prompt.h"

ABSL_FLAG(std::string, model, TOME_DEFAULT_MODEL_DIR, "model directory");
ABSL_FLAG(std::string, documents, "", "JSON lines from tools/eval/locality_documents.py");
ABSL_FLAG(int, answer_tokens, 8, "greedy decode steps after each question");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all)");
ABSL_FLAG(bool, random_baseline, true, "also run the model's shape with random weights");

namespace {

using tome::engine::Engine;
using Block = std::tuple<int, int, int32_t>;  // layer, KV group, block

// Data-dependent blocks the call's query `row` (at `position`) selected in every sparse layer.
std::set<Block> Selected(const Engine& engine, const std::vector<std::vector<int32_t>>& sel,
                         int64_t row, int64_t position) {
  const auto& c = engine.config();
  const int64_t G = c.num_kv_heads, topk = c.sparse.topk_total(), B = c.sparse.block_size;
  const int64_t bp = position / B;
  std::set<Block> out;
  for (size_t l = 0; l < sel.size(); ++l) {
    if (static_cast<int64_t>(sel[l].size()) < (row + 1) * G * topk) continue;  // dense call
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < topk; ++j) {
        const int32_t b = sel[l][(row * G + g) * topk + j];
        if (b >= c.sparse.init_blocks && b < bp - c.sparse.local_blocks()) {
          out.insert({static_cast<int>(l), static_cast<int>(g), b});
        }
      }
    }
  }
  return out;
}

// The blocks holding the needle line of the key-value question `question` ("What is the
// access code for <Name>?"): the line "The access code for <Name> is ..." of `text`, whose
// tokens start at `header` + the tokens of the text before it (lines tokenize on their own).
std::vector<int32_t> NeedleBlocks(const tome::engine::PromptFormat& prompt, const std::string& text,
                                  const std::string& question, int64_t header, int64_t block) {
  const std::string ask = "What is the access code for ";
  if (question.rfind(ask, 0) != 0 || question.size() < ask.size() + 1) return {};
  const std::string name = question.substr(ask.size(), question.size() - ask.size() - 1);
  const size_t at = text.find("The access code for " + name + " is ");
  if (at == std::string::npos) return {};
  const size_t end = text.find('\n', at);
  auto before = prompt.DocumentText(text.substr(0, at));
  auto line = prompt.DocumentText(text.substr(at, end == std::string::npos ? end : end - at));
  if (!before.ok() || !line.ok()) return {};
  const int64_t first = header + static_cast<int64_t>(before->size());
  std::vector<int32_t> blocks;
  for (int64_t b = first / block; b <= (first + static_cast<int64_t>(line->size()) - 1) / block;
       ++b) {
    blocks.push_back(static_cast<int32_t>(b));
  }
  return blocks;
}

// Whether query `row` read any of `blocks` in sparse layer `layer` (any KV group; forced blocks
// included); false for a dense call.
bool Reads(const Engine& engine, const std::vector<std::vector<int32_t>>& sel, size_t layer,
           int64_t row, const std::vector<int32_t>& blocks) {
  const auto& c = engine.config();
  const int64_t G = c.num_kv_heads, topk = c.sparse.topk_total();
  if (static_cast<int64_t>(sel[layer].size()) < (row + 1) * G * topk) return false;
  for (int64_t j = 0; j < G * topk; ++j) {
    const int32_t b = sel[layer][row * G * topk + j];
    if (std::find(blocks.begin(), blocks.end(), b) != blocks.end()) return true;
  }
  return false;
}

struct Totals {
  int64_t questions = 0, correct = 0, question_tokens = 0, token_blocks = 0, question_distinct = 0,
          steps = 0, step_blocks = 0, from_previous = 0, from_earlier = 0, new_next_to_earlier = 0;
};

// Key-value questions: does the query that predicts the answer's first token read the needle's
// block, per sparse layer, for questions answered right and wrong?
struct NeedleTotals {
  int64_t right = 0, wrong = 0;
  std::vector<int64_t> read_right, read_wrong;  // per sparse layer
  std::vector<int64_t> any_right, any_wrong;    // by any question token, per sparse layer
};

int Run(const Engine& engine, const std::vector<nlohmann::json>& docs, const char* label) {
  const tome::engine::PromptFormat prompt(&engine.tokenizer());
  const int answer_tokens = absl::GetFlag(FLAGS_answer_tokens);
  std::printf(
      "\n%s (%s)\n\n| tokens | task | questions | answered | blocks per query token |"
      " distinct per question | decode steps | from the previous step | from earlier |"
      " new per step | new next to an earlier one |\n"
      "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
      label, absl::GetFlag(FLAGS_model).c_str());
  for (const nlohmann::json& doc : docs) {
    auto text = prompt.DocumentText(doc["text"].get<std::string>());
    if (!text.ok()) {
      std::fprintf(stderr, "%s\n", text.status().ToString().c_str());
      return 1;
    }
    std::vector<int32_t> tokens = prompt.DocumentHeader();
    tokens.insert(tokens.end(), text->begin(), text->end());
    auto base = engine.NewSequence();
    if (!base.ok() || !engine.Prefill(**base, tokens).ok()) {
      std::fprintf(stderr, "prefill of a %zu-token document failed\n", tokens.size());
      return 1;
    }
    std::map<std::string, Totals> by_task;
    NeedleTotals needles;
    for (const nlohmann::json& qa : doc["qas"]) {
      Totals& t = by_task[qa["task"].get<std::string>()];
      auto question = prompt.Question(qa["question"].get<std::string>());
      auto seq = engine.Fork(**base);
      if (!question.ok() || !seq.ok()) return 1;
      std::vector<std::vector<int32_t>> sel;
      tome::engine::PrefillOptions options;
      options.capture_selection = &sel;
      const int64_t q0 = static_cast<int64_t>(tokens.size());
      auto logits = engine.Prefill(**seq, *question, options);
      if (!logits.ok()) return 1;
      std::set<Block> earlier, previous;
      const std::vector<std::vector<int32_t>> question_sel = sel;
      const int64_t question_last_row = static_cast<int64_t>(question->size()) - 1;
      for (size_t i = 0; i < question->size(); ++i) {
        previous = Selected(engine, sel, static_cast<int64_t>(i), q0 + static_cast<int64_t>(i));
        t.token_blocks += static_cast<int64_t>(previous.size());
        earlier.insert(previous.begin(), previous.end());
      }
      t.question_tokens += static_cast<int64_t>(question->size());
      t.question_distinct += static_cast<int64_t>(earlier.size());
      std::vector<int32_t> answer;
      int64_t position = q0 + static_cast<int64_t>(question->size());
      for (int s = 0; s < answer_tokens; ++s) {
        int32_t next = 0;
        for (size_t v = 1; v < logits->size(); ++v) {
          if ((*logits)[v] > (*logits)[next]) next = static_cast<int32_t>(v);
        }
        answer.push_back(next);
        logits = engine.Prefill(**seq, absl::MakeConstSpan(&next, 1), options);
        if (!logits.ok()) return 1;
        const std::set<Block> step = Selected(engine, sel, 0, position++);
        ++t.steps;
        t.step_blocks += static_cast<int64_t>(step.size());
        for (const Block& b : step) {
          t.from_previous += previous.count(b);
          t.from_earlier += earlier.count(b);
          const auto [layer, group, index] = b;
          t.new_next_to_earlier += !earlier.count(b) &&
                                   (earlier.count({layer, group, index - 1}) ||
                                    earlier.count({layer, group, index + 1}));
        }
        earlier.insert(step.begin(), step.end());
        previous = step;
      }
      const std::string got = engine.tokenizer().Decode(answer);
      const std::string want = " " + qa["answer"].get<std::string>();
      const bool right = got.compare(0, want.size(), want) == 0;
      t.correct += right;
      ++t.questions;
      const std::vector<int32_t> needle = NeedleBlocks(
          prompt, doc["text"].get<std::string>(), qa["question"].get<std::string>(),
          static_cast<int64_t>(prompt.DocumentHeader().size()), engine.config().sparse.block_size);
      if (!needle.empty()) {
        (right ? needles.right : needles.wrong) += 1;
        std::vector<int64_t>& read = right ? needles.read_right : needles.read_wrong;
        std::vector<int64_t>& any = right ? needles.any_right : needles.any_wrong;
        // The question call's selection (sel holds the last decode step's by now).
        size_t k = 0;
        for (size_t l = 0; l < question_sel.size(); ++l) {
          if (question_sel[l].empty()) continue;  // a Lightning layer
          if (read.size() <= k) read.resize(k + 1, 0), any.resize(k + 1, 0);
          read[k] += Reads(engine, question_sel, l, question_last_row, needle);
          bool some = false;
          for (int64_t row = 0; row <= question_last_row && !some; ++row) {
            some = Reads(engine, question_sel, l, row, needle);
          }
          any[k++] += some;
        }
      }
    }
    if (needles.right + needles.wrong > 0) {
      auto layers = [](const std::vector<int64_t>& read, int64_t n) {
        std::string out;
        for (int64_t r : read)
          out += (out.empty() ? "" : ", ") + std::to_string(r) + "/" + std::to_string(n);
        return out.empty() ? std::string("-") : out;
      };
      std::printf(
          "| %zu | needle block read, per sparse layer, by the answer's first query: "
          "answered right %s, wrong %s; by any question token: right %s, wrong %s |\n",
          tokens.size(), layers(needles.read_right, needles.right).c_str(),
          layers(needles.read_wrong, needles.wrong).c_str(),
          layers(needles.any_right, needles.right).c_str(),
          layers(needles.any_wrong, needles.wrong).c_str());
    }
    for (const auto& [task, t] : by_task) {
      auto per = [](int64_t a, int64_t b) { return b > 0 ? double(a) / double(b) : 0.0; };
      std::printf("| %zu | %s | %lld | %lld | %.1f | %.1f | %lld | %.0f%% | %.0f%% | %.1f | %.0f%% |\n",
                  tokens.size(), task.c_str(), static_cast<long long>(t.questions),
                  static_cast<long long>(t.correct), per(t.token_blocks, t.question_tokens),
                  per(t.question_distinct, t.questions), static_cast<long long>(t.steps),
                  100 * per(t.from_previous, t.step_blocks),
                  100 * per(t.from_earlier, t.step_blocks),
                  per(t.step_blocks - t.from_earlier, t.steps),
                  100 * per(t.new_next_to_earlier, t.step_blocks - t.from_earlier));
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tome::engine::PrepareCpuProcess(argv);
  absl::ParseCommandLine(argc, argv);
  std::ifstream in(absl::GetFlag(FLAGS_documents));
  if (!in) {
    std::fprintf(stderr, "--documents: cannot read '%s' (see tools/eval/locality_documents.py)\n",
                 absl::GetFlag(FLAGS_documents).c_str());
    return 2;
  }
  std::vector<nlohmann::json> docs;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.contains("text") || !doc.contains("qas")) {
      std::fprintf(stderr, "--documents: a line is not a document\n");
      return 2;
    }
    docs.push_back(std::move(doc));
  }
  for (const bool random : {false, true}) {
    if (random && !absl::GetFlag(FLAGS_random_baseline)) break;
    tome::engine::EngineOptions options;
    options.model_dir = absl::GetFlag(FLAGS_model);
    options.num_threads = absl::GetFlag(FLAGS_threads);
    if (random) options.random_weights_seed = 1;  // the model's config and tokenizer
    auto engine = Engine::Create(options);
    if (!engine.ok()) {
      std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
      return 1;
    }
    if (int rc = Run(**engine, docs, random ? "random weights" : "trained"); rc != 0) return rc;
  }
  return 0;
}
