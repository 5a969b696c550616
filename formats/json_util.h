// Small helpers for the JSON side files of Hugging Face checkpoints (config.json,
// tokenizer.json, quantize_config.json): read a whole text file, parse JSON with an slm::Error
// that names the source.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace slm {

// Whole file as text; slm::Error "cannot open <path>" when it cannot be read.
std::string read_text_file(const std::string& path);

// slm::Error "<what>: invalid JSON: ..." on a syntax error.
nlohmann::json parse_json(std::string_view text, std::string_view what);

}  // namespace slm
