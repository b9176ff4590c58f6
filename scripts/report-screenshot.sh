#!/bin/sh
# Renders the compliance report of the demo register to a PNG with headless Chromium (Debian
# package `chromium`), to look at the page as a reader would before a release.
#
#   scripts/report-screenshot.sh [OUT.png]      (default: var/report.png)
set -eu
out="${1:-var/report.png}"
bin="${FRISTVAKT_BIN:-target/release/fristvakt}"
"$bin" --config config/demo.toml poll --once >/dev/null
"$bin" --config config/demo.toml report compliance --from "$(date -d '-12 months' +%Y-%m-01)" --to "$(date -d yesterday +%F)" \
    --by unit,kind --format html --output var/report.html
chromium --headless --no-sandbox --disable-gpu --screenshot="$out" --window-size=1200,2600 "file://$(pwd)/var/report.html"
echo "$out"
