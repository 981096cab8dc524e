#!/usr/bin/env bash
# The selector's tests now run with the core module's: one kotlinc run compiles both (android_demo/test.sh).
#   bash android_demo/selector/test.sh      # = bash android_demo/test.sh
exec bash "$(cd "$(dirname "$0")/.." && pwd)/test.sh" "$@"
