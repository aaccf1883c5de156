#!/usr/bin/env bash
# Build the HTML template that `dvc plots show` uses (configured in .dvc/config), with vega,
# vega-lite and vega-embed inlined so that the plots page renders offline, without a CDN.
# The libraries come from the npm registry (pinned); without npm the template is still written
# and image plots render, but the vega charts say that the scripts are missing.
set -euo pipefail
out=${1:-.dvc/plots/offline.html}
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
scripts=""
if command -v npm >/dev/null 2>&1 && \
   (cd "$tmp" && npm pack --silent vega@5.33.0 vega-lite@5.23.0 vega-embed@6.29.0 >/dev/null 2>&1); then
  for pkg in vega vega-lite vega-embed; do
    tar -xzf "$tmp"/"$pkg"-[0-9]*.tgz -C "$tmp" package/build/"$pkg".min.js
    scripts+="<script>$(cat "$tmp/package/build/$pkg.min.js")</script>"$'\n'
  done
else
  echo "warning: npm not available: $out will render image plots only" >&2
  scripts='<script>function vegaEmbed(id){document.querySelector(id).innerText="vega scripts missing: install npm and rerun make setup";}</script>'
fi
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n<title>colorize: DVC plots</title>\n'
  printf '%s' "$scripts"
  printf '<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)"
