// `slmrun tokenize`: prints the token ids of a text as a JSON array.
#include <cstdio>

#include "core/error.h"
#include <filesystem>

#include "formats/gguf.h"
#include "formats/hf_tokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tools/slmrun/common.h"

namespace slm::cli {

void add_tokenize_command(CLI::App& app) {
  struct Opts {
    std::string model, prompt, file;
    bool no_bos = false, no_special = false, no_escape = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand("tokenize", "print the token ids of a text as a JSON array");
  c->add_option("-m,--model", o->model, "model file (GGUF)")->required();
  c->add_option("-p,--prompt", o->prompt, "text (\\n escapes are expanded)");
  c->add_option("-f,--file", o->file, "read the text from a file");
  c->add_flag("--no-bos", o->no_bos, "do not add BOS");
  c->add_flag("--no-special", o->no_special, "tokenize special-token text as plain text");
  c->add_flag("--no-escape", o->no_escape, "do not expand \\n escapes in -p");
  c->callback([o] {
    SLM_CHECK(o->prompt.empty() || o->file.empty(), "give only one of -p and -f");
    std::string text = o->file.empty() ? (o->no_escape ? o->prompt : unescape(o->prompt)) : read_file(o->file);
    // Only the tokenizer is needed: GGUF metadata, or tokenizer.json of an HF directory.
    std::unique_ptr<Tokenizer> tok;
    if (std::filesystem::is_directory(o->model)) {
      tok = Tokenizer::from_spec(read_hf_tokenizer_dir(o->model));
    } else {
      auto f = gguf::File::open(o->model);
      tok = Tokenizer::from_gguf(*f);
    }
    std::vector<int32_t> ids = tok->encode(text, !o->no_bos, !o->no_special);
    std::printf("[%s]\n", fmt::format("{}", fmt::join(ids, ", ")).c_str());
  });
}

}  // namespace slm::cli
