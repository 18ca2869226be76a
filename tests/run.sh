#!/usr/bin/env bash
# The test command the README gives: installs what the tests need, then runs them.
#   bash tests/run.sh [pytest arguments]
# - the package with its test extras (pytest, the openai client, selenium, nbclient, ipykernel, ...)
# - Debian's headless Chromium, its driver and CJK fonts for the browser tests (apt-get; sudo when
#   not root), when they are missing
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -e ".[test]"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
        echo "tests/run.sh: installing chromium, chromium-driver and fonts-noto-cjk for the browser tests" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null
    else
        echo "tests/run.sh: warning: no chromium/chromedriver and no apt-get to install them: the browser tests" \
             "will fail (install Chromium and its driver by hand)" >&2
    fi
fi
exec python3 -m pytest -q tests "$@"
