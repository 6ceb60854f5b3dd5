#!/usr/bin/env bash
# The storefront page test (tests/serve/test_shop_page.py) drives a real Chromium: Debian's chromium and
# chromium-driver, installed here when missing (nothing downloads a browser at run time). Best effort: where apt
# cannot install them (no root, no sudo, not Debian), that one test is skipped with a message saying how.
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"
packages=(chromium chromium-driver)
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 \
  || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1; } \
  || echo "warning: Chromium could not be installed (apt-get install chromium chromium-driver): the storefront page test will be skipped"
exit 0
