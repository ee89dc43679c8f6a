#!/usr/bin/env bash
# Lighthouse accessibility scores of the seven page types (home, model, layer, feature, words,
# method, how-to-read) of the demo-like test site (tests/pages: the fake atlas), in both
# colour schemes, with Debian's Chromium. Lighthouse comes from npm through npx (a download
# on first use), so CI does not run this: run it by hand and quote the result in the README.
#
#   bash scripts/lighthouse_a11y.sh [OUT_DIR]      # reports in OUT_DIR (default build/lighthouse)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/lighthouse}"
mkdir -p "$out"
export CHROME_PATH="${CHROME_PATH:-/usr/bin/chromium}"
py=.venv/bin/python
site="$out/site"
if [ ! -f "$site/index.html" ]; then
  $py - "$out" <<'PY'
import sys
from pathlib import Path
from tests.pages.test_site import build_small_site
site = build_small_site(Path(sys.argv[1]) / "build")
(Path(sys.argv[1]) / "site").unlink(missing_ok=True)
(Path(sys.argv[1]) / "site").symlink_to(site.resolve(), target_is_directory=True)
PY
fi
slug=$(cd "$site" && ls -d */ | grep -v -E '^(assets|search|schema|how-to-read|method|citing|data-format|hosting|scaling)/$' | head -1)
slug=${slug%/}
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$py -c "from pipeline.site import serve; serve('$site', '127.0.0.1', $port)" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 2
base="http://127.0.0.1:$port"
pages=("home /" "model /$slug/" "layer /$slug/0/" "feature /$slug/0/0/" "words /$slug/words/"
       "method /method/" "how-to-read /how-to-read/")
printf '%-12s %-6s %-6s %s\n' page light dark "failing audits"
for entry in "${pages[@]}"; do
  name=${entry%% *}; path=${entry#* }
  scores=()
  failed=""
  for scheme in light dark; do
    setting=$([ "$scheme" = dark ] && echo 0 || echo 1)
    report="$out/$name-$scheme.json"
    npx --yes lighthouse@12 "$base$path" --quiet --only-categories=accessibility --preset=desktop \
      --output=json --output-path="$report" \
      --chrome-flags="--headless=new --no-sandbox --disable-background-networking --blink-settings=preferredColorScheme=$setting" \
      >/dev/null 2>&1 || true
    score=$($py -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(100*r['categories']['accessibility']['score']))" "$report" 2>/dev/null || echo "?")
    fails=$($py -c "import json,sys; r=json.load(open(sys.argv[1])); print(','.join(k for k,a in r['audits'].items() if a.get('score') is not None and a['score'] < 1 and a.get('scoreDisplayMode') == 'binary'))" "$report" 2>/dev/null || true)
    scores+=("$score")
    [ -n "$fails" ] && failed="$failed $scheme:$fails"
  done
  printf '%-12s %-6s %-6s %s\n' "$name" "${scores[0]}" "${scores[1]}" "$failed"
done
