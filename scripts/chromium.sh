#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the console's browser tests, installed from Debian's
# packages on first use (apt-get as root, else through sudo). The last line is the browser's
# path and the driver's, separated by a space.
set -euo pipefail

browser=/usr/bin/chromium
driver=/usr/bin/chromedriver
if [[ ! -x "$browser" || ! -x "$driver" ]]; then
  echo "chromium: installing Debian's chromium and chromium-driver ..." >&2
  sudo=""
  if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
fi
echo "chromium: $("$browser" --version 2>/dev/null | head -n1), $("$driver" --version | head -n1)" >&2
echo "$browser $driver"
