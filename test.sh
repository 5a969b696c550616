#!/usr/bin/env bash
# Builds (incrementally, via setup.sh) and runs the whole test suite with CTest.
# Fixture tests use ../shared/fixtures (or $SLM_FIXTURES) and skip with a message when absent.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900
