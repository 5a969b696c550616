// slmrun: command-line front end. Subcommands: run, tokenize, info, bench, quantize,
// mkmodel.
// Every failure ends as one line "error: ..." on stderr and a non-zero exit code.
#include <cstdio>
#include <exception>

#include "core/error.h"
#include "tools/slmrun/common.h"

int main(int argc, char** argv) {
  CLI::App app{"slmrun: run, benchmark and inspect small Llama models (GGUF) on the CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "slmrun 0.1.0");
  slm::cli::add_run_command(app);
  slm::cli::add_tokenize_command(app);
  slm::cli::add_info_command(app);
  slm::cli::add_bench_command(app);
  slm::cli::add_quantize_command(app);
  slm::cli::add_mkmodel_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s (see slmrun --help)\n", e.what());
    return 2;
  } catch (const slm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
